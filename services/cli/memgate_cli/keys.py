"""`memgate keys create | list | revoke`."""

from __future__ import annotations

import argparse

from memgate_core.ids import CLIENT_ID_PATTERN
from memgate_store import Stores, migrate


async def run_keys(database_url: str, args: argparse.Namespace) -> int:
    await migrate(database_url)
    stores = await Stores.connect(database_url, max_size=2)
    try:
        if args.keys_command == "create":
            if not CLIENT_ID_PATTERN.fullmatch(args.tenant):
                raise SystemExit("memgate: --tenant must be 1-128 characters from A-Z a-z 0-9 . _ : @ -")
            key, plaintext = await stores.keys.create(args.tenant, args.name)
            if args.quiet:
                print(plaintext)
            else:
                print(f"API key for tenant '{key.tenant}' (id {key.id}); it is shown only once:\n{plaintext}")
        elif args.keys_command == "list":
            for key in await stores.keys.list(args.tenant):
                state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
                print(f"{key.id}\t{key.tenant}\t{key.prefix}...\t{key.created_at:%Y-%m-%d %H:%M}\t{state}")
        elif args.keys_command == "revoke":
            if not await stores.keys.revoke(args.key_id):
                raise SystemExit(f"memgate: no active key with id {args.key_id}")
            print(f"revoked {args.key_id}")
    finally:
        await stores.close()
    return 0
