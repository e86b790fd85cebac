"""The local SMTP server `./dev up` gives notify keeps every email in a maildir."""

from __future__ import annotations

import mailbox
from email.header import decode_header, make_header
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib

from deploy.local.stack import mail_sink


async def test_the_local_mail_sink_keeps_what_it_receives(tmp_path: Path) -> None:
    with mail_sink(tmp_path) as settings:
        message = EmailMessage()
        message["From"] = "cadre-pool@localhost"
        message["To"] = "wang.fang@example.org"
        message["Subject"] = "【后备干部】测试"
        message.set_content("你好")
        await aiosmtplib.send(message, hostname=settings["SMTP_HOST"], port=int(settings["SMTP_PORT"]))
        kept = list(mailbox.Maildir(settings["MAILDIR"], create=False))
    assert [str(make_header(decode_header(m["Subject"]))) for m in kept] == ["【后备干部】测试"]
