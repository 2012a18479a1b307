"""One redaction registry: the secrets masked are those of the configuration in use (and of one being loaded),
replaced by each applied reload rather than accumulated; a rejected reload keeps the live ones masked."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from daemon import write_config

from sentinel import redaction
from sentinel.cli.compose import compose
from sentinel.config import Settings, load_config
from sentinel.service.detector_runner import InProcessDetector

OLD, NEW, REJECTED, PREVIOUS = "oldOkta0secret", "newOkta1secret", "badOkta2secret", "prevOkta3secret"


def masked(secret: str) -> bool:
    record = logging.LogRecord("sentinel", logging.INFO, __file__, 1, "header value %s", (secret,), None)
    assert redaction.FILTER.filter(record)
    return secret not in record.getMessage()


def settings_for(folder: Path, env: dict[str, str], rule: str = "") -> Settings:
    folder.mkdir()
    config = write_config(folder)
    if rule:
        (folder / "rules" / "broken.toml").write_text(rule, encoding="utf-8")
    return load_config(config, env)


def test_a_reload_replaces_the_masked_secrets_and_a_rejected_one_keeps_them(tmp_path: Path) -> None:
    old = settings_for(tmp_path / "old", {"SENTINEL_OKTA_SECRET": OLD})
    new = settings_for(tmp_path / "new", {"SENTINEL_OKTA_SECRET": NEW, "SENTINEL_OKTA_SECRET_PREVIOUS": PREVIOUS})
    rejected = settings_for(tmp_path / "rejected", {"SENTINEL_OKTA_SECRET": REJECTED}, rule='id = "x"\n')

    settings = iter([new, rejected])
    daemon = compose(old, lambda: next(settings), detector=InProcessDetector)

    async def scenario() -> None:
        await daemon.lifecycle.start()
        try:
            assert masked(OLD) and not masked(NEW)
            assert await daemon.reloader.reload()
            # The rotation's previous secret is still accepted, so still masked; the old config's is gone.
            assert masked(NEW) and masked(PREVIOUS) and not masked(OLD)
            assert not await daemon.reloader.reload()
            assert masked(NEW) and masked(PREVIOUS) and not masked(REJECTED)
        finally:
            await daemon.lifecycle.stop()

    asyncio.run(scenario())


def test_a_url_being_parsed_is_hidden_only_while_parsed() -> None:
    registry = redaction.SecretRegistry()
    with registry.hiding({"hook0piece"}):
        assert registry("posting hook0piece") == "posting ****"
    assert registry("posting hook0piece") == "posting hook0piece"
