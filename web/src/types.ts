// The REST answers the console reads (gateway/openapi.json; proto field names, int64 as strings).

export interface APIKey {
  key_id: string;
  wallet_address: string;
  name: string;
  key_prefix: string;
  state: string; // API_KEY_STATE_ACTIVE, _REVOKED, _EXPIRED
  create_time: string;
  expire_time?: string;
  revoke_time?: string;
  last_used_time?: string;
}

export interface CreatedKey {
  api_key: APIKey;
  secret: string;
}

export interface Balance {
  wallet_address: string;
  available_micro_credits: string;
  reserved_micro_credits: string;
  total_micro_credits: string;
}

export interface LedgerEntry {
  entry_id: string;
  kind: string;
  delta_micro_credits: string;
  balance_after_micro_credits: string;
  description: string;
  create_time: string;
}

export interface NetworkStats {
  total_users: string;
  active_miners: string;
  total_micro_credits: string;
  block_height: string;
}

export interface MinerStats {
  current_hashrate: number;
  total_earned_micro_credits: string;
  blocks_found: string;
  report_count: string;
  active: boolean;
  last_report_time?: string;
}

export interface Day {
  year: number;
  month: number;
  day: number;
}

export interface EarningsPoint {
  date: Day;
  earned_micro_credits?: string;
}

export interface HashratePoint {
  date: Day;
  average_hashrate?: number;
  peak_hashrate?: number;
}

export interface Challenge {
  challenge_id: string;
  message: string;
}
