"""Money moves say which reservations they changed, so the service counts each change once.

Every move answers with two more columns: `t_state`, the state its own reservation entered
(HELD, CONFIRMED, ROLLED_BACK or EXPIRED; NULL for a repeat answered from its stored reply, a
move without a reservation, or a rollback of a hold closed before), and `t_expired`, how many
of the wallet's holds past their time it resolved as EXPIRED on the way. A repeat's reply says
nothing changed: only the call that did the work reports it. The Python sequence of
services/credits/moves.py reports the same on SQLite, where this migration does nothing.

Only the functions whose answer changes are replaced; the rest of 0002 stands. Its downgrade
puts 0002's functions back as they were.

Revision ID: 0004
Revises: 0003
"""

from importlib import import_module

from alembic import context, op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = "ALTER TYPE {s}.money_move ADD ATTRIBUTE t_state text, ADD ATTRIBUTE t_expired integer"

# A stored reply tells of the first call's work: a repeat changes nothing.
REPLY = """
CREATE OR REPLACE FUNCTION {s}.reply(p_response text) RETURNS {s}.money_move
LANGUAGE sql STABLE AS $$
    SELECT (j -> 'balance' ->> 0)::bigint, (j -> 'balance' ->> 1)::bigint,
           (j -> 'balance' ->> 2)::timestamptz,
           r.reservation_id, r.wallet_address, r.amount, r.captured, r.state, r.description,
           r.create_time, r.expire_time, r.close_time,
           e.entry_id, e.sequence, e.wallet_address, e.kind, e.delta, e.balance_after,
           e.reservation_id, e.description, e.create_time,
           NULL::text, 0
    FROM (SELECT p_response::json AS j) AS stored
    LEFT JOIN {s}.reservations AS r ON r.reservation_id = stored.j ->> 'reservation'
    LEFT JOIN {s}.ledger_entries AS e ON e.entry_id = stored.j ->> 'entry'
$$"""

# How many of the wallet's holds past their time it resolved (0 where 0002 said false).
EXPIRE_OF_WALLET = [
    "DROP FUNCTION {s}.expire_of_wallet(text, timestamptz)",
    """
CREATE FUNCTION {s}.expire_of_wallet(p_wallet text, p_now timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    held bigint;
    holds integer;
BEGIN
    WITH expired AS (
        UPDATE {s}.reservations SET state = 'EXPIRED', close_time = expire_time
        WHERE wallet_address = p_wallet AND state = 'HELD' AND expire_time <= p_now
        RETURNING amount
    )
    SELECT sum(amount), count(*) INTO held, holds FROM expired;
    IF holds > 0 THEN
        PERFORM {s}.release(p_wallet, held, 0, p_now);
    END IF;
    RETURN holds;
END $$""",
]

MOVES = [
    """
CREATE OR REPLACE FUNCTION {s}.deduct_credits(p_wallet text, p_amount bigint,
                                              p_description text, p_key text,
                                              p_fingerprint text, p_entry_id text,
                                              p_now timestamptz)
RETURNS {s}.money_move LANGUAGE plpgsql AS $$
DECLARE
    stored text;
    total bigint;
    expired integer := 0;
    answer {s}.money_move;
BEGIN
    stored := {s}.claim_key('DeductCredits', p_key, p_fingerprint, p_now);
    IF stored IS NOT NULL THEN
        RETURN {s}.reply(stored);
    END IF;
    UPDATE {s}.accounts SET available = available - p_amount, update_time = p_now
    WHERE wallet_address = p_wallet AND available >= p_amount
    RETURNING available + reserved INTO total;
    IF total IS NULL THEN
        expired := {s}.expire_of_wallet(p_wallet, p_now);
        IF expired > 0 THEN
            UPDATE {s}.accounts SET available = available - p_amount, update_time = p_now
            WHERE wallet_address = p_wallet AND available >= p_amount
            RETURNING available + reserved INTO total;
        END IF;
    END IF;
    IF total IS NULL THEN
        RAISE EXCEPTION 'INSUFFICIENT_CREDITS'
            USING ERRCODE = 'R3001', DETAIL = {s}.available_now(p_wallet, p_now)::text;
    END IF;
    INSERT INTO {s}.ledger_entries (entry_id, wallet_address, kind, delta, balance_after,
                                     reservation_id, description, create_time)
    VALUES (p_entry_id, p_wallet, 'DEDUCTION', -p_amount, total, NULL, p_description, p_now);
    answer := {s}.remember('DeductCredits', p_key, p_wallet, p_now, NULL, p_entry_id);
    answer.t_expired := expired;
    RETURN answer;
END $$""",
    """
CREATE OR REPLACE FUNCTION {s}.reserve_credits(p_wallet text, p_amount bigint,
                                               p_expire_time timestamptz, p_description text,
                                               p_key text, p_fingerprint text,
                                               p_reservation_id text, p_now timestamptz)
RETURNS {s}.money_move LANGUAGE plpgsql AS $$
DECLARE
    stored text;
    held boolean;
    expired integer := 0;
    answer {s}.money_move;
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
    IF NOT held THEN
        expired := {s}.expire_of_wallet(p_wallet, p_now);
        IF expired > 0 THEN
            UPDATE {s}.accounts
            SET available = available - p_amount, reserved = reserved + p_amount,
                update_time = p_now
            WHERE wallet_address = p_wallet AND available >= p_amount;
            held := FOUND;
        END IF;
    END IF;
    IF NOT held THEN
        RAISE EXCEPTION 'INSUFFICIENT_CREDITS'
            USING ERRCODE = 'R3001', DETAIL = {s}.available_now(p_wallet, p_now)::text;
    END IF;
    answer := {s}.remember('ReserveCredits', p_key, p_wallet, p_now, p_reservation_id, NULL);
    answer.t_state := 'HELD';
    answer.t_expired := expired;
    RETURN answer;
END $$""",
    """
CREATE OR REPLACE FUNCTION {s}.confirm_reservation(p_reservation_id text, p_capture bigint,
                                                   p_key text, p_fingerprint text,
                                                   p_entry_id text, p_now timestamptz)
RETURNS {s}.money_move LANGUAGE plpgsql AS $$
DECLARE
    stored text;
    hold record;
    total bigint;
    answer {s}.money_move;
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
    answer := {s}.remember('ConfirmReservation', p_key, hold.wallet_address, p_now,
                           p_reservation_id, p_entry_id);
    answer.t_state := 'CONFIRMED';
    RETURN answer;
END $$""",
    """
CREATE OR REPLACE FUNCTION {s}.roll_back_reservation(p_reservation_id text, p_key text,
                                                     p_fingerprint text, p_now timestamptz)
RETURNS {s}.money_move LANGUAGE plpgsql AS $$
DECLARE
    stored text;
    hold record;
    entered text;
    answer {s}.money_move;
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
        entered := 'ROLLED_BACK';
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
            entered := 'EXPIRED';
        END IF;
    END IF;
    answer := {s}.remember('RollbackReservation', p_key, hold.wallet_address, p_now,
                           p_reservation_id, NULL);
    answer.t_state := entered;
    RETURN answer;
END $$""",
]


def _schema() -> str | None:
    schema: str | None = context.config.attributes["schema"]
    return None if schema is None else '"' + schema.replace('"', '""') + '"'


def upgrade() -> None:
    schema = _schema()
    if schema is None:
        return
    for statement in [COLUMNS, REPLY, *EXPIRE_OF_WALLET, *MOVES]:
        op.execute(statement.replace("{s}", schema))


def downgrade() -> None:
    """0002's functions and type as they were: dropped with this shape, made again by 0002."""
    if _schema() is None:
        return
    # Its file name is no identifier, so it is imported by name (the functions are its data).
    previous = import_module("services.credits.migrations.versions.0002_money_moves")
    previous.downgrade()
    previous.upgrade()
