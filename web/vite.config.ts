// The console's build: index.html and what it imports, bundled into dist/ (served by the front
// door on R3MES_CONSOLE_PORT, docs/console.md).
import { defineConfig } from "vite";

export default defineConfig({
  build: { outDir: "dist", emptyOutDir: true, target: "es2022" },
});
