"""trio_rsocket: the Embedthis Ioto agent's RSocket API on trio.

Straight-line socket code, fiber-aware calls and absolute deadlines: a fiber
is a trio task, a deadline is an absolute time on trio's clock, and
:class:`RSocket` drives the descriptor itself, plain TCP directly and TLS
through a non-blocking :class:`ssl.SSLSocket`.
"""

from ._activation import InheritedSocket as InheritedSocket
from ._activation import inherited_sockets as inherited_sockets
from ._deadline import Deadline as Deadline
from ._deadline import deadline_after as deadline_after
from ._errors import ConnectError as ConnectError
from ._errors import DeadlineError as DeadlineError
from ._errors import DelimiterNotFoundError as DelimiterNotFoundError
from ._errors import FileReadError as FileReadError
from ._errors import IncompleteReadError as IncompleteReadError
from ._errors import ListenError as ListenError
from ._errors import RSocketError as RSocketError
from ._errors import TLSError as TLSError
from ._listen import get_socket_limit as get_socket_limit
from ._listen import set_socket_limit as set_socket_limit
from ._proxy import ProxyInfo as ProxyInfo
from ._runtime import Fiber as Fiber
from ._runtime import current_fiber as current_fiber
from ._runtime import open_runtime as open_runtime
from ._runtime import resume_fiber as resume_fiber
from ._runtime import run as run
from ._runtime import spawn_fiber as spawn_fiber
from ._runtime import stop as stop
from ._runtime import suspend_fiber as suspend_fiber
from ._secure import TLSStream as TLSStream
from ._socket import RSocket as RSocket
from ._socket import SocketStatistics as SocketStatistics
from ._tls import CertSource as CertSource
from ._tls import set_default_certs as set_default_certs
from ._tls import set_default_ciphers as set_default_ciphers
from ._tls import set_default_verify as set_default_verify
from ._unix_io import PeerCredentials as PeerCredentials
from ._version import __version__ as __version__
from ._workers import listen_addresses as listen_addresses
from ._workers import worker_id as worker_id

__all__ = [
    "CertSource",
    "ConnectError",
    "Deadline",
    "DeadlineError",
    "DelimiterNotFoundError",
    "Fiber",
    "FileReadError",
    "IncompleteReadError",
    "InheritedSocket",
    "ListenError",
    "PeerCredentials",
    "ProxyInfo",
    "RSocket",
    "RSocketError",
    "SocketStatistics",
    "TLSError",
    "TLSStream",
    "__version__",
    "current_fiber",
    "deadline_after",
    "get_socket_limit",
    "inherited_sockets",
    "listen_addresses",
    "open_runtime",
    "resume_fiber",
    "run",
    "set_default_certs",
    "set_default_ciphers",
    "set_default_verify",
    "set_socket_limit",
    "spawn_fiber",
    "stop",
    "suspend_fiber",
    "worker_id",
]

# Public objects say they are trio_rsocket's (in tracebacks, reprs and help()),
# not the private module they happen to live in; trio does the same.
for _name in __all__:
    _object = globals()[_name]
    if getattr(_object, "__module__", "").startswith("trio_rsocket._"):
        _object.__module__ = __name__
del _name, _object
