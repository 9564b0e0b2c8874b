"""Network sinks (webhook, MQTT, ...) and what they share: the durable outbox every one of
them sits behind (:mod:`libs.integrations.outbox`) and request signing
(:mod:`libs.integrations.signing`)."""
