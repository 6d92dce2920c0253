"""`dsr up` without SMTP: the request page writes its e-mails as files, so it can be tried."""

from __future__ import annotations

import email
import stat
from email.message import EmailMessage
from pathlib import Path

from orchestrator.gateway.public import Outbox, PublicPage, PublicSettings


def test_outbox_writes_each_mail_as_a_private_eml_file(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    mail = EmailMessage()
    mail["To"] = "anna@example.nl"
    mail["Subject"] = "Bevestig uw verzoek"
    mail.set_content("https://intake.example/nl/confirm/abc")
    outbox.send([mail, mail])
    files = sorted((tmp_path / "outbox").glob("*.eml"))
    assert len(files) == 2
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    parsed = email.message_from_bytes(files[0].read_bytes())
    assert parsed["Subject"] == "Bevestig uw verzoek"
    assert "confirm/abc" in parsed.get_payload()


def test_page_without_smtp_uses_the_outbox_only_when_one_is_set(tmp_path: Path) -> None:
    class _State:  # only what PublicPage reads at construction
        from orchestrator.runtime.config import Settings

        settings = Settings(register_file=tmp_path / "r.yaml", data_dir=tmp_path / "data")

    without = PublicPage(_State(), PublicSettings.model_validate({}))  # type: ignore[arg-type]
    assert without.smtp is None  # the page says it is unavailable
    settings = PublicSettings.model_validate({"outbox": tmp_path / "outbox"})
    page = PublicPage(_State(), settings)  # type: ignore[arg-type]
    assert isinstance(page.smtp, Outbox)
    smtp_state = _State()
    smtp_state.settings = smtp_state.settings.model_copy(
        update={"smtp_host": "mail.example", "smtp_from": "dsr@example.nl"}
    )
    assert not isinstance(PublicPage(smtp_state, settings).smtp, Outbox)  # type: ignore[arg-type]
