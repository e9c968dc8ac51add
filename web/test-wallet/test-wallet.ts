// The browser tests' Keplr: `window.keplr` backed by a cosmjs wallet of a fixed test key, whose
// signArbitrary signs what Keplr's does (Cosmos ADR-036: one sign/MsgSignData message with the
// text as base64 data, no fee, empty chain id and memo, account number and sequence 0). The test
// sets `window.R3MES_TEST_WALLET_KEY` (hex) before this script runs; what the console asked it to
// sign is kept in `window.R3MES_TEST_WALLET_SIGNED`. Built apart (vite.test-wallet.config.ts).
import { makeSignDoc, Secp256k1Wallet } from "@cosmjs/amino";
import { fromHex, toBase64, toUtf8 } from "@cosmjs/encoding";

import { WALLET_PREFIX, type Keplr } from "../src/keplr";

declare global {
  interface Window {
    R3MES_TEST_WALLET_KEY?: string;
    R3MES_TEST_WALLET_SIGNED?: string[];
  }
}

const signed: string[] = [];
const wallet = Secp256k1Wallet.fromKey(fromHex(window.R3MES_TEST_WALLET_KEY ?? ""), WALLET_PREFIX);

async function address(): Promise<string> {
  const [account] = await (await wallet).getAccounts();
  if (account === undefined) throw new Error("the test wallet has no account");
  return account.address;
}

const testKeplr: Keplr = {
  async enable() {},
  async getKey() {
    return { bech32Address: await address() };
  },
  async signArbitrary(_chainId, signer, data) {
    signed.push(data);
    const message = { type: "sign/MsgSignData", value: { signer, data: toBase64(toUtf8(data)) } };
    const doc = makeSignDoc([message], { gas: "0", amount: [] }, "", "", 0, 0);
    return (await (await wallet).signAmino(signer, doc)).signature;
  },
};

window.keplr = testKeplr;
window.R3MES_TEST_WALLET_SIGNED = signed;
