-- The dashboard's Settings page: a tenant's memory budgets beside its thresholds
-- (tenant_settings, 0003), and its own provider keys for bring-your-own-key.

-- Overrides of MEMGATE_CONTEXT_BUDGET_TOKENS and MEMGATE_RELATED_BUDGET_TOKENS (NULL: the
-- gateway's applies; a request's x-memory-budget-tokens still wins over both).
ALTER TABLE tenant_settings
    ADD COLUMN context_budget_tokens  integer CHECK (context_budget_tokens BETWEEN 1 AND 100000),
    ADD COLUMN related_budget_tokens  integer CHECK (related_budget_tokens BETWEEN 1 AND 100000);

-- One key per tenant and provider, never stored in the clear: `sealed` is AES-256-GCM under
-- the installation's secret (MEMGATE_SECRET_KEY or the data dir's secret.key), bound to its
-- tenant and provider. `last4` is all the dashboard ever shows of it again.
CREATE TABLE provider_keys (
    tenant    text NOT NULL,
    provider  text NOT NULL,
    sealed    bytea NOT NULL,
    last4     text NOT NULL,        -- '' for a key too short to show any of it
    saved_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, provider)
);
