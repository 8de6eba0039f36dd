"""The admin API (`/v1/admin/`): keys of every tenant and usage reports, for admin keys only."""
