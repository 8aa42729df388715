"""The throughput floor: the least SMTP server a per-connection process can be.

It answers every command of one session with a fixed reply and discards
the message, importing nothing but `os`.  Run under tcpserver by
`bench/run.py` to measure what the process-per-connection model itself
costs with this interpreter; qpsmtpd's messages/s are reported as a ratio
of this.
"""

import os


def main() -> None:
    os.write(1, b"220 floor ESMTP\r\n")
    buffer = b""
    in_data = False
    while True:
        chunk = os.read(0, 65536)
        if not chunk:
            return
        buffer += chunk
        while b"\r\n" in buffer:
            line, buffer = buffer.split(b"\r\n", 1)
            if in_data:
                if line == b".":
                    in_data = False
                    os.write(1, b"250 ok\r\n")
                continue
            verb = line[:4].upper()
            if verb == b"DATA":
                in_data = True
                os.write(1, b"354 go\r\n")
            elif verb == b"QUIT":
                os.write(1, b"221 bye\r\n")
                return
            elif verb == b"EHLO":
                os.write(1, b"250-floor\r\n250 8BITMIME\r\n")
            else:
                os.write(1, b"250 ok\r\n")


if __name__ == "__main__":
    main()
