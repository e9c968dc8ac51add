// The browser tests' stand-in for Keplr (test-wallet/test-wallet.ts), one script the tests inject
// into the page: built apart from dist/, so the console that is served never contains it.
import { defineConfig } from "vite";

export default defineConfig({
  build: {
    outDir: "dist-test",
    emptyOutDir: true,
    target: "es2022",
    lib: {
      entry: "test-wallet/test-wallet.ts",
      formats: ["iife"],
      name: "R3mesTestWallet",
      fileName: () => "test-wallet.js",
    },
  },
});
