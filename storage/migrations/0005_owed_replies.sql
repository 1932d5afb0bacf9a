-- The answers to a handled message, kept in its claim row (same transaction as the effect)
-- until the channel has sent them: a crash between saving and answering, or a send that
-- failed, is answered again when the message comes again (Telegram) or by the sweep
-- (WhatsApp). JSON: {"chat": chat id, "replies": [Reply.to_json(), ...]}; NULL once sent.
ALTER TABLE inbound ADD COLUMN replies TEXT;
