#!/usr/bin/env python3
"""A real SMTP server for the tests (aiosmtpd, Debian's python3-aiosmtpd): accepts
every mail on 127.0.0.1 and prints one JSON line per mail to stdout:
{"from", "to", "data"}. Prints "listening PORT" first.
"""
import json
import socket
import time

from aiosmtpd.controller import Controller


class Handler:
    async def handle_DATA(self, server, session, envelope):
        print(
            json.dumps(
                {
                    "from": envelope.mail_from,
                    "to": envelope.rcpt_tos,
                    "data": envelope.content.decode("utf-8", "replace"),
                }
            ),
            flush=True,
        )
        return "250 OK"


s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
controller = Controller(Handler(), hostname="127.0.0.1", port=port)
controller.start()
print("listening", port, flush=True)
while True:
    time.sleep(3600)
