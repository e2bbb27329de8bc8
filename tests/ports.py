"""A TCP port for a torch.distributed rendezvous, held until the process that uses it is done.

Picking a free port and closing it leaves a gap in which any other process may take it. The
holder here is bound with SO_REUSEADDR and never listens: the kernel then gives the port to no
other `bind(port 0)` or outgoing connection, while torch's TCPStore, which binds with
SO_REUSEADDR (libuv backend or not), can still bind and listen on it. Checked on Linux with
TCPStore, `init_process_group("gloo")` in two processes and `torch.distributed.run --master_port`.

    with reserved_port() as port:
        subprocess.run([..., "--main_process_port", str(port)])
"""

from __future__ import annotations

import socket
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def reserved_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port no one else is given while the block runs; a TCPStore started inside it may bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind((host, 0))
        yield holder.getsockname()[1]
