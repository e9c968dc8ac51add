// A wallet's first API key from JavaScript, signed with cosmjs exactly as Keplr's signArbitrary
// signs (ADR-036). In a browser with Keplr, `await window.keplr.signArbitrary(chainId, wallet,
// challenge.message)` returns the same `{ pub_key: { value }, signature }` as `signAmino` below.
// Run: cd clients/node-example && npm ci && R3MES_BASE=http://127.0.0.1:8080 node first-api-key.mjs
import { webcrypto } from "node:crypto";

import { makeSignDoc, Secp256k1Wallet } from "@cosmjs/amino";
import { toBase64, toUtf8 } from "@cosmjs/encoding";

const base = process.env.R3MES_BASE ?? "http://127.0.0.1:8080";
// A new test wallet; use your wallet's own signer (Keplr's, or one made from its key) instead.
const signer = await Secp256k1Wallet.fromKey(webcrypto.getRandomValues(new Uint8Array(32)), "remes");
const [{ address: wallet }] = await signer.getAccounts();

async function post(path, body) {
  const reply = await fetch(base + path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!reply.ok) throw new Error(`POST ${path}: ${reply.status} ${await reply.text()}`);
  return reply.json();
}

const { challenge } = await post(`/v1/wallets/${wallet}/challenges`, {});
// ADR-036: one sign/MsgSignData message whose data is the challenge's text; no fee, empty chain id
// and memo, account number and sequence 0.
const signDoc = makeSignDoc(
  [{ type: "sign/MsgSignData", value: { signer: wallet, data: toBase64(toUtf8(challenge.message)) } }],
  { gas: "0", amount: [] },
  "",
  "",
  0,
  0,
);
const { signature } = await signer.signAmino(wallet, signDoc);
const { secret } = await post(`/v1/wallets/${wallet}/apikeys:createWithSignature`, {
  challenge_id: challenge.challenge_id,
  pub_key: signature.pub_key.value,
  signature: signature.signature,
  name: "node",
});
console.log(`WALLET=${wallet}`);
console.log(`API_KEY=${secret}`);
