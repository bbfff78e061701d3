"""trio_rsocket: the Embedthis Ioto agent's RSocket API on trio.

Straight-line socket code, fiber-aware calls and absolute deadlines: a fiber
is a trio task, a deadline is an absolute time on trio's clock, and
:class:`RSocket` wraps :class:`trio.SocketStream` and :class:`trio.SSLStream`.
"""

from ._deadline import Deadline as Deadline
from ._deadline import deadline_after as deadline_after
from ._errors import ConnectError as ConnectError
from ._errors import DeadlineError as DeadlineError
from ._errors import IncompleteReadError as IncompleteReadError
from ._errors import ListenError as ListenError
from ._errors import RSocketError as RSocketError
from ._errors import TLSError as TLSError
from ._socket import RSocket as RSocket
from ._socket import SocketStatistics as SocketStatistics
from ._version import __version__ as __version__
