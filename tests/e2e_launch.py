"""Test-only launcher: ``python tests/e2e_launch.py serve --config FILE``.

Apprise's Slack and PagerDuty plugins have hard-coded endpoints. For the end-to-end test the daemon
runs in a subprocess, so pytest's monkeypatch cannot reach it; this launcher points the two plugins
at ``$SENTINEL_E2E_CAPTURE_BASE`` (a local recording server) and then runs the real ``sentinel``
command. The daemon itself has no such hook, so production can never be redirected this way.
"""

from __future__ import annotations

import os
import sys

from apprise.plugins import pagerduty
from apprise.plugins.slack import NotifySlack

base = os.environ["SENTINEL_E2E_CAPTURE_BASE"]
NotifySlack.webhook_url = f"{base}/services"
pagerduty.PAGERDUTY_API_LOOKUP["us"] = f"{base}/v2/enqueue"

from sentinel.cli import main  # noqa: E402 - after the patch, as the daemon would import it

main(sys.argv[1:], prog_name="sentinel")
