"""The Settings page: the signed-in tenant's memory thresholds and budgets, its API keys
(create — the key shown once —, limits, revoke) and its provider keys for bring-your-own-key
(stored sealed, never shown again: only the provider, the last 4 characters and when).

Everything is read and written for the signed-in tenant only: another tenant's key id is a
404 like one that does not exist. Every form is a POST under the same-origin check; bad input
shows the page again with the error, and nothing is stored.

Choices: the dashboard never creates an admin key, nor changes or revokes one (the operator
does, with `memgate keys` or the admin API). The key this session signed in with cannot be
revoked here: that would end the session at once and could lock the tenant out of its last
key; sign in with another key of the tenant to revoke it.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, TypedDict

from litestar import Request, get, post
from litestar.datastructures import Cookie
from litestar.response import Redirect, Template

from memgate_core.encryption import SecretBox, SecretUnreadable
from memgate_edge.dashboard.pages import SESSION_COOKIE, DashboardPages, same_origin
from memgate_edge.deps import EdgeDeps
from memgate_store.keys import ApiKey, limits_error, name_error
from memgate_store.tenant_settings import BUDGET_RANGE, THRESHOLD_RANGE, TenantSettings, settings_error

Requested = Request[Any, Any, Any]
NEW_KEY_COOKIE = "memgate_new_key"  # the key just created, sealed, until the next page shows it
NEW_KEY_SECONDS = 120
# What a redirect after a saved form says (`?saved=...`): fixed texts, nothing from the request.
DONE = {
    "memory": "Memory settings saved. The observer uses them from its next batch, chat within a few seconds.",
    "limits": "The key's limits were saved.",
    "revoked": "The key was revoked; it no longer works.",
    "provider-key": "Provider key saved. It is stored encrypted and will not be shown again.",
    "provider-key-removed": "Provider key removed.",
}
MEMORY_FIELDS = {  # the form's fields (TenantSettings), their labels and what they do
    "activation_tokens": ("Observation threshold", THRESHOLD_RANGE,
                          "Tokens of a thread's raw messages after which observations replace the oldest of them."),
    "observation_budget_tokens": ("Reflection threshold", THRESHOLD_RANGE,
                                  "Tokens of active observations after which the Reflector condenses them."),
    "context_budget_tokens": ("Memory budget", BUDGET_RANGE,
                              "Most tokens of memory injected into one request (x-memory-budget-tokens still wins)."),
    "related_budget_tokens": ("Recall budget", BUDGET_RANGE,
                              "Of the memory budget, most tokens recalled from the resource's other threads."),
}
LIMIT_FIELDS = {"rpm": "Chat rpm", "burst": "Burst", "memory_read_rpm": "Memory reads rpm",
                "memory_write_rpm": "Memory writes rpm"}


class FormError(ValueError):
    """Input the page refuses: the message is shown on it (it never holds a secret)."""


def _number(form: Any, field: str, label: str) -> int | None:
    """A whole number from the form; None when left empty (the default applies)."""
    raw = str(form.get(field, "")).strip().replace(",", "").replace("_", "")
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise FormError(f"{label} must be a whole number (or empty for the default).")
    return int(raw)


class KeyLimits(TypedDict):
    """Keyword arguments of KeyRepository.create and set_limits."""

    rpm_limit: int | None
    burst: int | None
    memory_read_rpm: int | None
    memory_write_rpm: int | None


def _limits(form: Any) -> KeyLimits:
    """A key's limits from the form."""
    rpm, burst, read, write = (_number(form, field, label) for field, label in LIMIT_FIELDS.items())
    problem = limits_error(rpm, burst, memory_read_rpm=read, memory_write_rpm=write)
    if problem:
        raise FormError(f"Invalid limits: {problem}.")
    return {"rpm_limit": rpm, "burst": burst, "memory_read_rpm": read, "memory_write_rpm": write}


def _new_key_context(tenant: str, key_id: str) -> str:
    return f"new-api-key\x1f{tenant}\x1f{key_id}"


class SettingsPages(DashboardPages):
    path = "/dashboard/settings"

    # ------------------------------------------------------------------ the page

    @get("/")
    async def settings(self, request: Requested, deps: EdgeDeps, tenant: str, saved: str | None = None) -> Template:
        """The tenant's memory settings, API keys and provider keys."""
        return await self._settings(request, deps, tenant, done=DONE.get(saved or ""))

    async def _settings(self, request: Requested, deps: EdgeDeps, tenant: str, *, status: int = 200,
                        errors: dict[str, str] | None = None, form: dict[str, str] | None = None,
                        done: str | None = None) -> Template:
        s = deps.settings
        defaults = {"activation_tokens": s.activation_tokens, "observation_budget_tokens": s.observation_budget_tokens,
                    "context_budget_tokens": s.context_budget_tokens, "related_budget_tokens": s.related_budget_tokens}
        overrides = await deps.stores.tenant_settings.get(tenant)
        memory = [
            {"name": name, "label": label, "help": help_text, "range": f"{low:,}–{high:,}",
             "default": defaults[name], "override": getattr(overrides, name),
             "value": (form or {}).get(name, "") if errors and "memory" in errors else (getattr(overrides, name) or "")}
            for name, (label, (low, high), help_text) in MEMORY_FIELDS.items()
        ]
        keys = sorted(await deps.stores.keys.list(tenant), key=lambda k: (k.revoked_at is not None, k.created_at))
        page = self._page(
            "settings.html", deps, tenant=tenant, active="Settings", memory=memory, keys=keys,
            current_key=await self._current_key(request, deps), provider_keys=await deps.stores.provider_keys.list(tenant),
            providers=self._providers(deps), errors=errors or {}, form=form or {}, done=done,
            limit_fields=LIMIT_FIELDS)
        page.status_code = status
        return page

    # ------------------------------------------------------------------ memory settings

    @post("/memory", status_code=303, guards=[same_origin])
    async def save_memory(self, request: Requested, deps: EdgeDeps, tenant: str) -> Template | Redirect:
        """The tenant's thresholds and budgets (an empty field: the gateway's default)."""
        form = await request.form()
        posted = {name: str(form.get(name, "")) for name in MEMORY_FIELDS}
        try:
            values = {name: _number(form, name, label) for name, (label, _, _) in MEMORY_FIELDS.items()}
            wanted = TenantSettings(**values)
            problem = settings_error(wanted)
            if problem is not None:
                raise FormError(f"{MEMORY_FIELDS[problem[0]][0]} {problem[1]} (or empty for the default).")
            budget = wanted.context_budget_tokens or deps.settings.context_budget_tokens
            if wanted.related_budget_tokens is not None and wanted.related_budget_tokens > budget:
                raise FormError(f"The recall budget cannot be more than the memory budget ({budget:,} tokens).")
        except FormError as exc:
            return await self._settings(request, deps, tenant, status=400, errors={"memory": str(exc)}, form=posted)
        await deps.stores.tenant_settings.save(tenant, wanted)
        return Redirect("/dashboard/settings?saved=memory", status_code=303)

    # ------------------------------------------------------------------ API keys

    @post("/keys", status_code=303, guards=[same_origin])
    async def create_key(self, request: Requested, deps: EdgeDeps, tenant: str) -> Template | Redirect:
        """A new key of the tenant (never an admin key), shown once on the next page."""
        form = await request.form()
        posted = {name: str(form.get(name, "")) for name in ("name", *LIMIT_FIELDS)}
        try:
            name = posted["name"].strip()
            if problem := name_error(name or None):
                raise FormError(f"{problem[0].upper()}{problem[1:]}.")
            limits = _limits(form)
        except FormError as exc:
            return await self._settings(request, deps, tenant, status=400, errors={"api_keys": str(exc)}, form=posted)
        key, plaintext = await deps.stores.keys.create(tenant, name or None, **limits)
        # Carried to the next page sealed in a short-lived cookie for that page only, so that
        # a reload of it (or any later visit) cannot show the key again.
        sealed = self._box(deps).seal(plaintext, context=_new_key_context(tenant, key.id))
        cookie = Cookie(key=NEW_KEY_COOKIE, value=base64.urlsafe_b64encode(sealed).decode(), httponly=True,
                        samesite="strict", path=f"/dashboard/settings/keys/{key.id}/created", max_age=NEW_KEY_SECONDS,
                        secure=request.url.scheme == "https")
        return Redirect(f"/dashboard/settings/keys/{key.id}/created", cookies=[cookie], status_code=303)

    @get("/keys/{key_id:str}/created")
    async def created_key(self, request: Requested, deps: EdgeDeps, tenant: str, key_id: str) -> Template:
        """The key just created, this once (its cookie is cleared with this answer)."""
        key = await self._own_key(deps, tenant, key_id)
        plaintext = None
        if key is not None:
            try:
                sealed = base64.urlsafe_b64decode(request.cookies.get(NEW_KEY_COOKIE, "").encode())
                plaintext = self._box(deps).open(sealed, context=_new_key_context(tenant, key.id))
            except (binascii.Error, ValueError, SecretUnreadable):
                plaintext = None
        page = self._page("settings_key_created.html", deps, tenant=tenant, active="Settings", key=key,
                          plaintext=plaintext)
        page.headers["cache-control"] = "no-store"
        if key is None:
            page.status_code = 404
        else:
            page.cookies.append(Cookie(key=NEW_KEY_COOKIE, value="", path=f"/dashboard/settings/keys/{key.id}/created",
                                       max_age=0))
        return page

    @get("/keys/{key_id:str}")
    async def key(self, request: Requested, deps: EdgeDeps, tenant: str, key_id: str) -> Template:
        """One key: its limits to change, and revoking it (after a confirmation box)."""
        return await self._key_page(request, deps, tenant, key_id)

    async def _key_page(self, request: Requested, deps: EdgeDeps, tenant: str, key_id: str, *, status: int = 200,
                        error: str | None = None, form: dict[str, str] | None = None) -> Template:
        key = await self._own_key(deps, tenant, key_id)
        if key is not None and form is None:
            form = {field: "" if value is None else str(value) for field, value in zip(
                LIMIT_FIELDS, (key.rpm_limit, key.burst, key.memory_read_rpm, key.memory_write_rpm))}
        s = deps.settings
        page = self._page("settings_key.html", deps, tenant=tenant, active="Settings", key=key, error=error,
                          form=form or {}, limit_fields=LIMIT_FIELDS, current=key is not None and
                          key.id == await self._current_key(request, deps),
                          defaults={"rpm": s.default_rpm, "burst": None, "memory_read_rpm": s.memory_read_rpm,
                                    "memory_write_rpm": s.memory_write_rpm})
        page.status_code = 404 if key is None else status
        return page

    @post("/keys/{key_id:str}/limits", status_code=303, guards=[same_origin])
    async def set_limits(self, request: Requested, deps: EdgeDeps, tenant: str, key_id: str) -> Template | Redirect:
        key = await self._own_key(deps, tenant, key_id)
        form = await request.form()
        posted = {name: str(form.get(name, "")) for name in LIMIT_FIELDS}
        if key is None or key.is_admin or key.revoked_at is not None:
            return await self._key_page(request, deps, tenant, key_id, status=400, form=posted,
                                        error="This key's limits cannot be changed here.")
        try:
            limits = _limits(form)
        except FormError as exc:
            return await self._key_page(request, deps, tenant, key_id, status=400, error=str(exc), form=posted)
        if await deps.stores.keys.set_limits(key.id, tenant=tenant, **limits) is None:  # (revoked meanwhile)
            return await self._key_page(request, deps, tenant, key_id, status=409, form=posted,
                                        error="This key was revoked meanwhile.")
        deps.auth.forget(key.id)  # the new limits apply at once on this replica (others: MEMGATE_AUTH_CACHE_SECONDS)
        return Redirect("/dashboard/settings?saved=limits", status_code=303)

    @post("/keys/{key_id:str}/revoke", status_code=303, guards=[same_origin])
    async def revoke_key(self, request: Requested, deps: EdgeDeps, tenant: str, key_id: str) -> Template | Redirect:
        key = await self._own_key(deps, tenant, key_id)
        form = await request.form()
        error = None
        if key is None or key.is_admin:
            error = "This key cannot be revoked here."
        elif key.id == await self._current_key(request, deps):
            error = "This is the key you signed in with: sign in with another key of this tenant to revoke it."
        elif form.get("confirm") != "yes":
            error = "Tick the box to confirm that the key should stop working."
        if error is not None:
            return await self._key_page(request, deps, tenant, key_id, status=400, error=error)
        assert key is not None
        await deps.stores.keys.revoke(key.id)
        deps.auth.forget(key.id)  # at once on this replica; within the auth cache time on the others
        return Redirect("/dashboard/settings?saved=revoked", status_code=303)

    # ------------------------------------------------------------------ provider keys

    @post("/provider-keys", status_code=303, guards=[same_origin])
    async def save_provider_key(self, request: Requested, deps: EdgeDeps, tenant: str) -> Template | Redirect:
        """Save (or replace) the tenant's key for a provider: sealed, never shown again."""
        form = await request.form()
        provider = str(form.get("provider", "")).strip()
        key = str(form.get("provider_key", "")).strip()
        if provider not in self._providers(deps):
            error = "Choose one of the providers this gateway routes to."
        else:
            try:
                await deps.stores.provider_keys.save(tenant, provider, key)
                return Redirect("/dashboard/settings?saved=provider-key", status_code=303)
            except ValueError as exc:  # (its message never holds the key)
                error = str(exc)
        return await self._settings(request, deps, tenant, status=400, errors={"provider_keys": error},
                                    form={"provider": provider})  # (never the key)

    @post("/provider-keys/{provider:str}/remove", status_code=303, guards=[same_origin])
    async def remove_provider_key(self, request: Requested, deps: EdgeDeps, tenant: str, provider: str) -> Template | Redirect:
        if provider not in self._providers(deps) or not await deps.stores.provider_keys.remove(tenant, provider):
            return await self._settings(request, deps, tenant, status=404,
                                        errors={"provider_keys": "There is no saved key for that provider."})
        return Redirect("/dashboard/settings?saved=provider-key-removed", status_code=303)

    # ------------------------------------------------------------------ helpers

    async def _current_key(self, request: Requested, deps: EdgeDeps) -> str | None:
        """The id of the key this session signed in with."""
        token = request.cookies.get(SESSION_COOKIE)
        return await deps.stores.sessions.key_for(token) if token else None

    @staticmethod
    async def _own_key(deps: EdgeDeps, tenant: str, key_id: str) -> ApiKey | None:
        """The tenant's key with this id; None for another tenant's, as for none."""
        if "\x00" in key_id:  # (no id holds one, and Postgres text cannot)
            return None
        key = await deps.stores.keys.get(key_id)
        return key if key is not None and key.tenant == tenant else None

    @staticmethod
    def _providers(deps: EdgeDeps) -> list[str]:
        """The providers this gateway routes to (a key can be saved for each)."""
        return sorted(deps.chat.providers.registry.providers)

    @staticmethod
    def _box(deps: EdgeDeps) -> SecretBox:
        box = deps.stores.secret_box
        if box is None:
            raise RuntimeError("the edge's stores have no secret box")
        return box
