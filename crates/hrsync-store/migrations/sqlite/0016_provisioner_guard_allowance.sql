-- Deprovision guard: a deactivation let through under the immediate
-- termination allowance while the guard was tripped (1) or within the
-- limits (0); the allowance is counted per window from these rows.
ALTER TABLE provisioner_deactivation ADD COLUMN allowance BIGINT NOT NULL DEFAULT 0;
