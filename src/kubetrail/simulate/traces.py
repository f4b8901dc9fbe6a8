"""Multiline records: Java exceptions, Python tracebacks, Go panics and goroutine dumps.

Each function returns the physical lines of one record (no blank lines: every physical line carries a
sequence id, and a blank line with only a token would not be realistic output of any runtime).
"""

from __future__ import annotations

import numpy as np

__all__ = ["go_goroutine_dump", "go_panic", "java_exception", "python_traceback"]

_JAVA_FRAMES = (
    "org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:885)",
    "jakarta.servlet.http.HttpServlet.service(HttpServlet.java:658)",
    "org.apache.catalina.core.ApplicationFilterChain.internalDoFilter(ApplicationFilterChain.java:205)",
    "org.apache.catalina.core.ApplicationFilterChain.doFilter(ApplicationFilterChain.java:149)",
    "org.springframework.web.filter.OncePerRequestFilter.doFilter(OncePerRequestFilter.java:116)",
    "org.apache.catalina.core.StandardWrapperValve.invoke(StandardWrapperValve.java:167)",
    "org.apache.catalina.core.StandardContextValve.invoke(StandardContextValve.java:90)",
    "org.apache.catalina.connector.CoyoteAdapter.service(CoyoteAdapter.java:340)",
    "org.apache.coyote.http11.Http11Processor.service(Http11Processor.java:391)",
    "org.apache.tomcat.util.net.NioEndpoint$SocketProcessor.doRun(NioEndpoint.java:1744)",
    "java.base/java.util.concurrent.ThreadPoolExecutor.runWorker(ThreadPoolExecutor.java:1144)",
    "java.base/java.lang.Thread.run(Thread.java:1583)",
)
_JAVA_APP = (
    "com.example.shop.orders.OrderService.place(OrderService.java:{n})",
    "com.example.shop.orders.OrderController.create(OrderController.java:{n})",
    "com.example.shop.orders.PaymentClient.charge(PaymentClient.java:{n})",
    "com.example.shop.orders.InventoryRepository.reserve(InventoryRepository.java:{n})",
)
_JAVA_EXC = (
    ("java.lang.IllegalStateException", "Order {n} is already closed"),
    ("java.lang.NullPointerException", 'Cannot invoke "Customer.getId()" because "customer" is null'),
    ("org.springframework.dao.DataIntegrityViolationException", "could not execute statement; SQL [n/a]"),
    ("java.net.SocketTimeoutException", "Read timed out after {n} ms"),
)
_JAVA_CAUSE = (
    (
        "org.postgresql.util.PSQLException",
        'ERROR: duplicate key value violates unique constraint "orders_pkey"',
    ),
    ("java.net.SocketTimeoutException", "Read timed out"),
    ("java.io.IOException", "Connection reset by peer"),
)


def java_exception(rng: np.random.Generator, head: str) -> list[str]:
    """A logback ERROR line followed by an exception with ``\\tat`` frames and a ``Caused by:`` chain."""
    n = int(rng.integers(10, 9999))
    exc, msg = _JAVA_EXC[int(rng.integers(0, len(_JAVA_EXC)))]
    lines = [head, f"{exc}: {msg.format(n=n)}"]
    for frame in _JAVA_APP[: int(rng.integers(2, 5))]:
        lines.append(f"\tat {frame.format(n=int(rng.integers(20, 400)))}")
    lines.extend(f"\tat {f}" for f in _JAVA_FRAMES[: int(rng.integers(6, len(_JAVA_FRAMES) + 1))])
    if rng.random() < 0.6:
        cexc, cmsg = _JAVA_CAUSE[int(rng.integers(0, len(_JAVA_CAUSE)))]
        lines.append(f"Caused by: {cexc}: {cmsg}")
        lines.append(
            "\tat org.postgresql.core.v3.QueryExecutorImpl.receiveErrorResponse(QueryExecutorImpl.java:2725)"
        )
        lines.append(
            "\tat org.postgresql.core.v3.QueryExecutorImpl.processResults(QueryExecutorImpl.java:2412)"
        )
        lines.append(f"\t... {int(rng.integers(8, 40))} more")
    return lines


_PY_FRAMES = (
    (
        "/usr/local/lib/python3.12/site-packages/flask/app.py",
        880,
        "full_dispatch_request",
        "rv = self.dispatch_request()",
    ),
    (
        "/usr/local/lib/python3.12/site-packages/flask/app.py",
        865,
        "dispatch_request",
        "return self.ensure_sync(self.view_functions[rule.endpoint])(**view_args)",
    ),
    ("/app/payments/api.py", 142, "create_charge", "charge = gateway.charge(card, amount, currency)"),
    ("/app/payments/gateway.py", 58, "charge", "response = self._session.post(url, json=body, timeout=5)"),
    ("/app/payments/gateway.py", 91, "_check", 'raise GatewayError(f"gateway returned {status}")'),
)
_PY_EXC = (
    "payments.gateway.GatewayError: gateway returned 502",
    "KeyError: 'currency'",
    "ValueError: invalid literal for int() with base 10: 'abc'",
    "requests.exceptions.ReadTimeout: "
    "HTTPSConnectionPool(host='api.stripe.example', port=443): Read timed out.",
)


def python_traceback(rng: np.random.Generator, head: str) -> list[str]:
    """``Traceback (most recent call last):`` with File/code line pairs and the final exception line."""
    lines = [head, "Traceback (most recent call last):"]
    for path, line, func, code in _PY_FRAMES[int(rng.integers(0, 2)) :]:
        lines.append(f'  File "{path}", line {line}, in {func}')
        lines.append(f"    {code}")
    lines.append(_PY_EXC[int(rng.integers(0, len(_PY_EXC)))])
    return lines


def go_panic(rng: np.random.Generator) -> list[str]:
    """A Go runtime panic as printed to stderr before the process exits with status 2."""
    pc = int(rng.integers(0x400000, 0x900000))
    return [
        "panic: runtime error: invalid memory address or nil pointer dereference",
        f"[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc={pc:#x}]",
        f"goroutine {int(rng.integers(20, 400))} [running]:",
        "github.com/example/cart/internal/store.(*Store).Get(0x0, {0xc0001a2000, 0x24})",
        f"\t/src/internal/store/store.go:{int(rng.integers(30, 200))} +0x1d",
        "github.com/example/cart/internal/api.(*Handler).getCart(0xc000112380, "
        "{0xb1c5e0, 0xc0002a40e0}, 0xc0001f6000)",
        f"\t/src/internal/api/cart.go:{int(rng.integers(30, 200))} +0x8f",
        "net/http.HandlerFunc.ServeHTTP(0xc00012a000?, {0xb1c5e0?, 0xc0002a40e0?}, 0x0?)",
        "\t/usr/local/go/src/net/http/server.go:2220 +0x29",
        "net/http.serverHandler.ServeHTTP({0xc000188000?}, {0xb1c5e0?, 0xc0002a40e0?}, 0x6?)",
        "\t/usr/local/go/src/net/http/server.go:3210 +0x8e",
        "created by net/http.(*Server).Serve in goroutine 1",
        "\t/usr/local/go/src/net/http/server.go:3360 +0x485",
    ]


def go_goroutine_dump(rng: np.random.Generator) -> list[str]:
    """A SIGQUIT goroutine dump (several goroutines, each a header and frame pairs)."""
    lines = ["SIGQUIT: quit", f"PC={int(rng.integers(0x400000, 0x900000)):#x} m=0 sigcode=0"]
    for g in sorted(int(x) for x in rng.choice(np.arange(1, 500), size=4, replace=False)):
        state = ("IO wait", "select", "chan receive", "semacquire")[g % 4]
        lines.append(f"goroutine {g} [{state}, {int(rng.integers(1, 60))} minutes]:")
        lines.append("internal/poll.runtime_pollWait(0x7f3b2c1e8e28, 0x72)")
        lines.append("\t/usr/local/go/src/runtime/netpoll.go:351 +0x85")
        lines.append("net.(*netFD).accept(0xc000158000)")
        lines.append("\t/usr/local/go/src/net/fd_unix.go:172 +0x29")
    return lines
