// Signing in with Keplr: a challenge from the gateway, signed with Keplr's signArbitrary (Cosmos
// ADR-036, the proof services/apikeys/wallet_proof.py checks), traded for an API key.
import { pubkeyToAddress, type StdSignature } from "@cosmjs/amino";

import type { Api } from "./api";
import type { Challenge, CreatedKey } from "./types";

export const WALLET_PREFIX = "remes";

/** The part of Keplr's injected API the console uses. */
export interface Keplr {
  enable(chainId: string): Promise<void>;
  getKey(chainId: string): Promise<{ bech32Address: string }>;
  signArbitrary(chainId: string, signer: string, data: string): Promise<StdSignature>;
}

declare global {
  interface Window {
    keplr?: Keplr;
  }
}

export function keplr(): Keplr | null {
  return window.keplr ?? null;
}

/** The wallet Keplr holds for the chain, and a new API key of it made from its signature. */
export async function keyFromSignature(
  api: Api,
  chainId: string,
  name: string,
): Promise<CreatedKey> {
  const wallet = keplr();
  if (wallet === null) throw new Error("Keplr is not installed in this browser.");
  try {
    await wallet.enable(chainId);
  } catch (cause) {
    throw new Error(`Keplr did not open the chain ${chainId}: ${String(cause)}`);
  }
  const { bech32Address: address } = await wallet.getKey(chainId);
  const path = `/v1/wallets/${address}`;
  const { challenge } = await api.post<{ challenge: Challenge }>(`${path}/challenges`, {});
  const signature = await wallet.signArbitrary(chainId, address, challenge.message);
  // Said here in plain words rather than as the gateway's PUBLIC_KEY_MISMATCH.
  const signer = pubkeyToAddress(signature.pub_key, WALLET_PREFIX);
  if (signer !== address) {
    throw new Error(`Keplr signed with ${signer}, not with the wallet ${address} it named.`);
  }
  return api.post<CreatedKey>(`${path}/apikeys:createWithSignature`, {
    challenge_id: challenge.challenge_id,
    pub_key: signature.pub_key.value,
    signature: signature.signature,
    name,
  });
}
