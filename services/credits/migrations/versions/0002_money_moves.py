"""PostgreSQL functions that move money in one statement each: grant, deduct, reserve, confirm,
roll back and expire. Each does what the Python sequence of services/credits/moves.py does (the
idempotency claim and its stored reply, the conditional write, the ledger entry, the balance
after), so a money move costs one round trip and the wallet's row stays locked for one statement
instead of from its UPDATE to a COMMIT several round trips later.

A refusal raises (SQLSTATE R3001, the message its reason, the detail a figure the caller is told):
the statement, and so every row it wrote, rolls back, as the Python sequence's exception rolls
back its transaction. A concurrent change to retry raises serialization_failure, which the unit
of work retries. SQLite has no functions: there the Python sequence runs, and this migration does
nothing.

Revision ID: 0002
Revises: 0001
"""

from alembic import context, op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BALANCE_LIMIT = 10**18  # services.credits.domain.BALANCE_LIMIT when this migration was written

# Every function answers with one row of this shape: the balance the first call returned (read
# back from its stored reply, so a repeat answers the same), the reservation as it is now and
# the ledger entry, each NULL where the move has none.
MONEY_MOVE = """
CREATE TYPE {s}.money_move AS (
    b_available bigint, b_reserved bigint, b_update_time timestamptz,
    r_id text, r_wallet_address text, r_amount bigint, r_captured bigint, r_state text,
    r_description text, r_create_time timestamptz, r_expire_time timestamptz,
    r_close_time timestamptz,
    e_id text, e_sequence bigint, e_wallet_address text, e_kind text, e_delta bigint,
    e_balance_after bigint, e_reservation_id text, e_description text, e_create_time timestamptz
)"""

HELPERS = [
    # NULL: this call claimed the key and must do the work; else the first call's reply.
    """
CREATE FUNCTION {s}.claim_key(p_scope text, p_key text, p_fingerprint text, p_now timestamptz)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    stored record;
BEGIN
    INSERT INTO {s}.idempotency_keys (scope, key, fingerprint, response, create_time)
    VALUES (p_scope, p_key, p_fingerprint, NULL, p_now) ON CONFLICT DO NOTHING;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    SELECT fingerprint, response INTO stored
    FROM {s}.idempotency_keys WHERE scope = p_scope AND key = p_key;
    IF NOT FOUND OR stored.response IS NULL THEN
        RAISE EXCEPTION 'a concurrent repeat of this call' USING ERRCODE = 'serialization_failure';
    END IF;
    IF stored.fingerprint <> p_fingerprint THEN
        RAISE EXCEPTION 'IDEMPOTENCY_KEY_REUSED' USING ERRCODE = 'R3001';
    END IF;
    RETURN stored.response;
END $$""",
    """
CREATE FUNCTION {s}.reply(p_response text) RETURNS {s}.money_move LANGUAGE sql STABLE AS $$
    SELECT (j -> 'balance' ->> 0)::bigint, (j -> 'balance' ->> 1)::bigint,
           (j -> 'balance' ->> 2)::timestamptz,
           r.reservation_id, r.wallet_address, r.amount, r.captured, r.state, r.description,
           r.create_time, r.expire_time, r.close_time,
           e.entry_id, e.sequence, e.wallet_address, e.kind, e.delta, e.balance_after,
           e.reservation_id, e.description, e.create_time
    FROM (SELECT p_response::json AS j) AS stored
    LEFT JOIN {s}.reservations AS r ON r.reservation_id = stored.j ->> 'reservation'
    LEFT JOIN {s}.ledger_entries AS e ON e.entry_id = stored.j ->> 'entry'
$$""",
    # The reply in the shape services/credits/replays.py encodes, with the balance as callers see
    # it now (holds past their time count as available), stored under the key, and answered.
    """
CREATE FUNCTION {s}.remember(p_scope text, p_key text, p_wallet text, p_now timestamptz,
                             p_reservation_id text, p_entry_id text)
RETURNS {s}.money_move LANGUAGE plpgsql AS $$
DECLARE
    reply_text text;
BEGIN
    SELECT json_build_object(
        'balance', json_build_array(
            coalesce(a.available + x.expired, 0), coalesce(a.reserved - x.expired, 0),
            to_char(a.update_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')),
        'reservation', p_reservation_id,
        'entry', p_entry_id)::text
    INTO reply_text
    FROM (SELECT p_wallet AS wallet_address) AS w
    LEFT JOIN {s}.accounts AS a ON a.wallet_address = w.wallet_address
    LEFT JOIN LATERAL (
        SELECT coalesce(sum(amount), 0)::bigint AS expired FROM {s}.reservations
        WHERE wallet_address = w.wallet_address AND state = 'HELD' AND expire_time <= p_now
    ) AS x ON true;
    UPDATE {s}.idempotency_keys SET response = reply_text WHERE scope = p_scope AND key = p_key;
    RETURN {s}.reply(reply_text);
END $$""",
    """
CREATE FUNCTION {s}.available_now(p_wallet text, p_now timestamptz)
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT coalesce((
        SELECT a.available + (
            SELECT coalesce(sum(amount), 0) FROM {s}.reservations
            WHERE wallet_address = p_wallet AND state = 'HELD' AND expire_time <= p_now)
        FROM {s}.accounts AS a WHERE a.wallet_address = p_wallet), 0)::bigint
$$""",
    # A hold of `p_held` ends: `p_captured` leaves the wallet, the rest is available again; the
    # wallet's total after it.
    """
CREATE FUNCTION {s}.release(p_wallet text, p_held bigint, p_captured bigint, p_now timestamptz)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    total bigint;
BEGIN
    UPDATE {s}.accounts
    SET reserved = reserved - p_held, available = available + (p_held - p_captured),
        update_time = p_now
    WHERE wallet_address = p_wallet AND reserved >= p_held
    RETURNING available + reserved INTO total;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the account holds less than a hold of % it had', p_held
            USING ERRCODE = 'R3002';
    END IF;
    RETURN total;
END $$""",
    # The wallet's holds past their time resolved as EXPIRED now, as the sweeper would.
    """
CREATE FUNCTION {s}.expire_of_wallet(p_wallet text, p_now timestamptz)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    held bigint;
BEGIN
    WITH expired AS (
        UPDATE {s}.reservations SET state = 'EXPIRED', close_time = expire_time
        WHERE wallet_address = p_wallet AND state = 'HELD' AND expire_time <= p_now
        RETURNING amount
    )
    SELECT sum(amount) INTO held FROM expired;
    IF held IS NULL THEN
        RETURN false;
    END IF;
    PERFORM {s}.release(p_wallet, held, 0, p_now);
    RETURN true;
END $$""",
    """
CREATE FUNCTION {s}.refuse_confirm(p_reservation_id text, p_capture bigint, p_now timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    stored record;
BEGIN
    SELECT state, amount, expire_time INTO stored
    FROM {s}.reservations WHERE reservation_id = p_reservation_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'RESERVATION_NOT_FOUND' USING ERRCODE = 'R3001';
    ELSIF stored.state = 'CONFIRMED' THEN
        RAISE EXCEPTION 'RESERVATION_ALREADY_CONFIRMED' USING ERRCODE = 'R3001';
    ELSIF stored.state = 'ROLLED_BACK' THEN
        RAISE EXCEPTION 'RESERVATION_ALREADY_ROLLED_BACK' USING ERRCODE = 'R3001';
    ELSIF stored.state = 'EXPIRED' OR stored.expire_time <= p_now THEN
        RAISE EXCEPTION 'RESERVATION_EXPIRED' USING ERRCODE = 'R3001';
    ELSIF p_capture > stored.amount THEN
        RAISE EXCEPTION 'AMOUNT_EXCEEDS_RESERVATION'
            USING ERRCODE = 'R3001', DETAIL = stored.amount::text;
    END IF;
    RAISE EXCEPTION 'the reservation changed meanwhile' USING ERRCODE = 'serialization_failure';
END $$""",
]

MOVES = [
    """
CREATE FUNCTION {s}.grant_credits(p_wallet text, p_amount bigint, p_description text,
                                  p_key text, p_fingerprint text, p_entry_id text,
                                  p_now timestamptz)
RETURNS {s}.money_move LANGUAGE plpgsql AS $$
DECLARE
    stored text;
    total bigint;
BEGIN
    stored := {s}.claim_key('GrantCredits', p_key, p_fingerprint, p_now);
    IF stored IS NOT NULL THEN
        RETURN {s}.reply(stored);
    END IF;
    INSERT INTO {s}.accounts (wallet_address, available, reserved, update_time)
    VALUES (p_wallet, 0, 0, p_now) ON CONFLICT DO NOTHING;
    UPDATE {s}.accounts SET available = available + p_amount, update_time = p_now
    WHERE wallet_address = p_wallet AND available + reserved <= {limit} - p_amount
    RETURNING available + reserved INTO total;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'BALANCE_LIMIT_EXCEEDED' USING ERRCODE = 'R3001';
    END IF;
    INSERT INTO {s}.ledger_entries (entry_id, wallet_address, kind, delta, balance_after,
                                     reservation_id, description, create_time)
    VALUES (p_entry_id, p_wallet, 'GRANT', p_amount, total, NULL, p_description, p_now);
    RETURN {s}.remember('GrantCredits', p_key, p_wallet, p_now, NULL, p_entry_id);
END $$""",
    """
CREATE FUNCTION {s}.deduct_credits(p_wallet text, p_amount bigint, p_description text,
                                   p_key text, p_fingerprint text, p_entry_id text,
                                   p_now timestamptz)
RETURNS {s}.money_move LANGUAGE plpgsql AS $$
DECLARE
    stored text;
    total bigint;
BEGIN
    stored := {s}.claim_key('DeductCredits', p_key, p_fingerprint, p_now);
    IF stored IS NOT NULL THEN
        RETURN {s}.reply(stored);
    END IF;
    UPDATE {s}.accounts SET available = available - p_amount, update_time = p_now
    WHERE wallet_address = p_wallet AND available >= p_amount
    RETURNING available + reserved INTO total;
    IF total IS NULL AND {s}.expire_of_wallet(p_wallet, p_now) THEN
        UPDATE {s}.accounts SET available = available - p_amount, update_time = p_now
        WHERE wallet_address = p_wallet AND available >= p_amount
        RETURNING available + reserved INTO total;
    END IF;
    IF total IS NULL THEN
        RAISE EXCEPTION 'INSUFFICIENT_CREDITS'
            USING ERRCODE = 'R3001', DETAIL = {s}.available_now(p_wallet, p_now)::text;
    END IF;
    INSERT INTO {s}.ledger_entries (entry_id, wallet_address, kind, delta, balance_after,
                                     reservation_id, description, create_time)
    VALUES (p_entry_id, p_wallet, 'DEDUCTION', -p_amount, total, NULL, p_description, p_now);
    RETURN {s}.remember('DeductCredits', p_key, p_wallet, p_now, NULL, p_entry_id);
END $$""",
    """
CREATE FUNCTION {s}.reserve_credits(p_wallet text, p_amount bigint, p_expire_time timestamptz,
                                    p_description text, p_key text, p_fingerprint text,
                                    p_reservation_id text, p_now timestamptz)
RETURNS {s}.money_move LANGUAGE plpgsql AS $$
DECLARE
    stored text;
    held boolean;
BEGIN
    stored := {s}.claim_key('ReserveCredits', p_key, p_fingerprint, p_now);
    IF stored IS NOT NULL THEN
        RETURN {s}.reply(stored);
    END IF;
    INSERT INTO {s}.reservations (reservation_id, wallet_address, amount, captured, state,
                                   description, create_time, expire_time, close_time)
    VALUES (p_reservation_id, p_wallet, p_amount, 0, 'HELD', p_description, p_now,
            p_expire_time, NULL);
    UPDATE {s}.accounts
    SET available = available - p_amount, reserved = reserved + p_amount, update_time = p_now
    WHERE wallet_address = p_wallet AND available >= p_amount;
    held := FOUND;
    IF NOT held AND {s}.expire_of_wallet(p_wallet, p_now) THEN
        UPDATE {s}.accounts
        SET available = available - p_amount, reserved = reserved + p_amount,
            update_time = p_now
        WHERE wallet_address = p_wallet AND available >= p_amount;
        held := FOUND;
    END IF;
    IF NOT held THEN
        RAISE EXCEPTION 'INSUFFICIENT_CREDITS'
            USING ERRCODE = 'R3001', DETAIL = {s}.available_now(p_wallet, p_now)::text;
    END IF;
    RETURN {s}.remember('ReserveCredits', p_key, p_wallet, p_now, p_reservation_id, NULL);
END $$""",
    """
CREATE FUNCTION {s}.confirm_reservation(p_reservation_id text, p_capture bigint, p_key text,
                                        p_fingerprint text, p_entry_id text,
                                        p_now timestamptz)
RETURNS {s}.money_move LANGUAGE plpgsql AS $$
DECLARE
    stored text;
    hold record;
    total bigint;
BEGIN
    stored := {s}.claim_key('ConfirmReservation', p_key, p_fingerprint, p_now);
    IF stored IS NOT NULL THEN
        RETURN {s}.reply(stored);
    END IF;
    UPDATE {s}.reservations
    SET state = 'CONFIRMED', captured = coalesce(p_capture, amount), close_time = p_now
    WHERE reservation_id = p_reservation_id AND state = 'HELD' AND expire_time > p_now
      AND amount >= coalesce(p_capture, 0)
    RETURNING wallet_address, amount, captured, description INTO hold;
    IF NOT FOUND THEN
        PERFORM {s}.refuse_confirm(p_reservation_id, p_capture, p_now);
    END IF;
    total := {s}.release(hold.wallet_address, hold.amount, hold.captured, p_now);
    INSERT INTO {s}.ledger_entries (entry_id, wallet_address, kind, delta, balance_after,
                                     reservation_id, description, create_time)
    VALUES (p_entry_id, hold.wallet_address, 'CAPTURE', -hold.captured, total,
            p_reservation_id, hold.description, p_now);
    RETURN {s}.remember('ConfirmReservation', p_key, hold.wallet_address, p_now,
                        p_reservation_id, p_entry_id);
END $$""",
    """
CREATE FUNCTION {s}.roll_back_reservation(p_reservation_id text, p_key text,
                                          p_fingerprint text, p_now timestamptz)
RETURNS {s}.money_move LANGUAGE plpgsql AS $$
DECLARE
    stored text;
    hold record;
BEGIN
    stored := {s}.claim_key('RollbackReservation', p_key, p_fingerprint, p_now);
    IF stored IS NOT NULL THEN
        RETURN {s}.reply(stored);
    END IF;
    UPDATE {s}.reservations SET state = 'ROLLED_BACK', close_time = p_now
    WHERE reservation_id = p_reservation_id AND state = 'HELD' AND expire_time > p_now
    RETURNING wallet_address, amount INTO hold;
    IF FOUND THEN
        PERFORM {s}.release(hold.wallet_address, hold.amount, 0, p_now);
    ELSE
        SELECT wallet_address, amount, state INTO hold
        FROM {s}.reservations WHERE reservation_id = p_reservation_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'RESERVATION_NOT_FOUND' USING ERRCODE = 'R3001';
        ELSIF hold.state = 'CONFIRMED' THEN
            RAISE EXCEPTION 'RESERVATION_ALREADY_CONFIRMED' USING ERRCODE = 'R3001';
        ELSIF hold.state = 'HELD' THEN
            -- Past its time and not swept yet: resolved as EXPIRED now, releasing its credits.
            UPDATE {s}.reservations SET state = 'EXPIRED', close_time = expire_time
            WHERE reservation_id = p_reservation_id AND state = 'HELD'
              AND expire_time <= p_now
            RETURNING wallet_address, amount INTO hold;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'the reservation changed meanwhile'
                    USING ERRCODE = 'serialization_failure';
            END IF;
            PERFORM {s}.release(hold.wallet_address, hold.amount, 0, p_now);
        END IF;
    END IF;
    RETURN {s}.remember('RollbackReservation', p_key, hold.wallet_address, p_now,
                        p_reservation_id, NULL);
END $$""",
    # The sweeper's batch: up to `p_limit` holds past their time (those another sweeper holds
    # locked skipped), resolved as EXPIRED, their wallets released in one order so that two
    # sweepers never wait on each other in a cycle; how many.
    """
CREATE FUNCTION {s}.expire_due(p_now timestamptz, p_limit integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    wallets text[];
    amounts bigint[];
    swept integer;
BEGIN
    WITH due AS (
        SELECT reservation_id FROM {s}.reservations
        WHERE state = 'HELD' AND expire_time <= p_now
        ORDER BY expire_time LIMIT p_limit FOR UPDATE SKIP LOCKED
    ), expired AS (
        UPDATE {s}.reservations AS r SET state = 'EXPIRED', close_time = r.expire_time
        FROM due
        WHERE r.reservation_id = due.reservation_id AND r.state = 'HELD'
          AND r.expire_time <= p_now
        RETURNING r.wallet_address, r.amount
    ), per_wallet AS (
        SELECT wallet_address, sum(amount)::bigint AS held, count(*) AS holds
        FROM expired GROUP BY wallet_address
    )
    SELECT array_agg(wallet_address ORDER BY wallet_address COLLATE "C"),
           array_agg(held ORDER BY wallet_address COLLATE "C"), coalesce(sum(holds), 0)
    INTO wallets, amounts, swept FROM per_wallet;
    FOR i IN 1 .. coalesce(array_length(wallets, 1), 0) LOOP
        PERFORM {s}.release(wallets[i], amounts[i], 0, p_now);
    END LOOP;
    RETURN swept;
END $$""",
]

# In the order they are dropped: each before what it calls.
FUNCTIONS = [
    "expire_due(timestamptz, integer)",
    "roll_back_reservation(text, text, text, timestamptz)",
    "confirm_reservation(text, bigint, text, text, text, timestamptz)",
    "reserve_credits(text, bigint, timestamptz, text, text, text, text, timestamptz)",
    "deduct_credits(text, bigint, text, text, text, text, timestamptz)",
    "grant_credits(text, bigint, text, text, text, text, timestamptz)",
    "refuse_confirm(text, bigint, timestamptz)",
    "expire_of_wallet(text, timestamptz)",
    "release(text, bigint, bigint, timestamptz)",
    "available_now(text, timestamptz)",
    "remember(text, text, text, timestamptz, text, text)",
    "reply(text)",
    "claim_key(text, text, text, timestamptz)",
]


def _schema() -> str | None:
    schema: str | None = context.config.attributes["schema"]
    return None if schema is None else '"' + schema.replace('"', '""') + '"'


def upgrade() -> None:
    schema = _schema()
    if schema is None:
        return
    for statement in [MONEY_MOVE, *HELPERS, *MOVES]:
        # str.replace, not format: the bodies are full of braces of their own.
        op.execute(statement.replace("{s}", schema).replace("{limit}", str(BALANCE_LIMIT)))


def downgrade() -> None:
    schema = _schema()
    if schema is None:
        return
    for signature in FUNCTIONS:
        op.execute(f"DROP FUNCTION {schema}.{signature}")
    op.execute(f"DROP TYPE {schema}.money_move")
