#!/usr/bin/env python3
"""Device OS's TCP server test client (user/tests/app/tcp_server/client in
particle-iot/device-os: tests.js, lib/test.js, lib/client.js), ported from Node to Python
asyncio. Control requests go to `fwsim serve --control` as HTTP POSTs instead of USB.

usage: vendor_client.py CONTROL_URL [STRESS_CONNS [TEST_NAME...]]

Runs every test of tests.js in order, as main.js does (connect to the network, note free
memory, run, disconnect clients, stop servers, check memory), and prints one JSON object per
test: {"test": NAME, "passed": BOOL, "error": MESSAGE}. Timeouts are shorter than the Node
client's 30 s so that a failing run ends sooner; every wait is bounded.
"""
import asyncio
import json
import random
import string
import sys
import urllib.error
import urllib.request

DEFAULT_PORT = 1234
DEFAULT_TIMEOUT = 10.0
MEMORY_USAGE_THRESH = 0.025
# As tests.js: lwIP's MEMP_NUM_TCP_PCB and WICED_MAXIMUM_NUMBER_OF_SERVERS.
MAX_CONNECTIONS = 5
MAX_SERVERS = 5


class DeviceControl:
    url = None

    @classmethod
    def _post(cls, req):
        body = json.dumps(req).encode()
        r = urllib.request.Request(cls.url, data=body, method="POST")
        try:
            with urllib.request.urlopen(r, timeout=DEFAULT_TIMEOUT) as resp:
                rep = json.loads(resp.read())
        except urllib.error.HTTPError as e:
            rep = json.loads(e.read())
        if "error" in rep:
            raise RuntimeError(rep["error"])
        return rep

    @classmethod
    async def command(cls, cmd, **params):
        return await asyncio.to_thread(cls._post, dict(params, cmd=cmd))


class Client:
    def __init__(self, host, port):
        self.host, self.port = host, port
        self.timeout = DEFAULT_TIMEOUT
        self.reader = self.writer = None
        self.data = b""
        self.connected = False

    async def connect(self):
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), self.timeout)
        self.connected = True

    async def wait_until_closed(self):
        # Node's 'close' after the peer's FIN: read until EOF.
        async def drain():
            while await self.reader.read(4096):
                pass
        await asyncio.wait_for(drain(), self.timeout)
        self.close()

    async def disconnect(self):
        # sock.end(): half-close, then wait for the server to close its side.
        self.writer.write_eof()
        await self.wait_until_closed()

    async def write(self, data):
        self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), self.timeout)

    async def read(self, size):
        async def fill():
            while len(self.data) < size:
                chunk = await self.reader.read(4096)
                if not chunk:
                    raise RuntimeError("Connection has been closed")
                self.data += chunk
        await asyncio.wait_for(fill(), self.timeout)
        d, self.data = self.data[:size], self.data[size:]
        return d

    def close(self):
        self.connected = False
        if self.writer is not None:
            self.writer.close()


class EchoClient(Client):
    async def echo(self, length=None):
        if length is None:
            length = random.randint(4, 128)
        s = "".join(random.choice(string.ascii_letters + string.digits)
                    for _ in range(length)).encode()
        await self.write(s)
        if await self.read(len(s)) != s:
            raise RuntimeError("Unexpected reply from server")


class Test:
    def __init__(self, name, func):
        self.name, self.func = name, func
        self.dev_addr = None
        self.clients = []
        self.servers = set()
        self.next_server_id = 1

    def new_client(self, cls=Client, port=DEFAULT_PORT):
        c = cls(self.dev_addr, port)
        self.clients.append(c)
        return c

    async def start_server(self, kind, id_or_port=None, port=None):
        sid = "server%d" % self.next_server_id
        self.next_server_id += 1
        p = DEFAULT_PORT
        if isinstance(id_or_port, int):
            p = id_or_port
        elif id_or_port is not None:
            sid = id_or_port
            if port is not None:
                p = port
        await DeviceControl.command("startServer", id=sid, type=kind, port=p)
        self.servers.add(sid)

    async def stop_server(self, sid):
        await DeviceControl.command("stopServer", id=sid)
        self.servers.discard(sid)

    async def stop_servers(self):
        if self.servers:
            await DeviceControl.command("stopServers")
            self.servers.clear()

    async def connect_to_network(self):
        stat = await DeviceControl.command("getNetworkStatus")
        if not stat.get("connected"):
            rep = await DeviceControl.command("connectToNetwork")
            self.dev_addr = rep["address"]
        else:
            self.dev_addr = stat["address"]

    async def disconnect_from_network(self):
        stat = await DeviceControl.command("getNetworkStatus")
        if stat.get("connected"):
            await DeviceControl.command("disconnectFromNetwork")

    async def run(self):
        await self.connect_to_network()
        before = (await DeviceControl.command("getFreeMemory"))["bytes"]
        try:
            await self.func(self)
        finally:
            open_clients = [c for c in self.clients if c.connected]
            try:
                await asyncio.gather(*(c.disconnect() for c in open_clients))
            except Exception:
                for c in open_clients:
                    c.close()
                raise
            finally:
                await self.stop_servers()
        after = (await DeviceControl.command("getFreeMemory"))["bytes"]
        if after < before and before - after >= before * MEMORY_USAGE_THRESH:
            raise RuntimeError("Memory check failed")


# ---- tests.js -------------------------------------------------------------------------------

async def echo_test(t):
    client = t.new_client(EchoClient)
    await t.start_server("EchoServer")
    await client.connect()
    await client.echo()


async def max_connections_test(t):
    await t.start_server("EchoServer")
    clients = [t.new_client(EchoClient) for _ in range(MAX_CONNECTIONS)]
    for c in clients:
        await c.connect()
    extra = t.new_client(EchoClient)
    extra.timeout = 1.0
    try:
        await extra.connect()
    except Exception:
        pass
    else:
        raise RuntimeError("Extra connection has been established unexpectedly")
    for c in clients:
        await c.echo()


async def extra_connection_test(t):
    await t.start_server("EchoServer")
    clients = [t.new_client(EchoClient) for _ in range(MAX_CONNECTIONS)]
    for c in clients:
        await c.connect()
    extra = t.new_client(EchoClient)
    pending = asyncio.ensure_future(extra.connect())
    await asyncio.sleep(1.0)
    if extra.connected:
        raise RuntimeError("Extra connection has been established unexpectedly")
    await clients.pop(0).disconnect()
    await pending
    clients.append(extra)
    for c in clients:
        await c.echo()


async def max_servers_test(t):
    await asyncio.gather(*(t.start_server("EchoServer", DEFAULT_PORT + i)
                           for i in range(MAX_SERVERS)))
    try:
        await t.start_server("EchoServer", DEFAULT_PORT + MAX_SERVERS)
    except Exception:
        pass
    else:
        raise RuntimeError("Extra server instance has been started unexpectedly")
    for i in range(MAX_SERVERS):
        c = t.new_client(EchoClient, DEFAULT_PORT + i)
        await c.connect()
        await c.echo()


async def no_server_socket_leak_on_network_disconnect_test(t):
    await asyncio.gather(*(t.start_server("SimpleServer", DEFAULT_PORT + i)
                           for i in range(MAX_SERVERS)))
    await t.disconnect_from_network()
    await asyncio.sleep(1.0)
    await t.stop_servers()
    await t.connect_to_network()
    await asyncio.gather(*(t.start_server("SimpleServer", DEFAULT_PORT + i)
                           for i in range(MAX_SERVERS)))


async def stopped_server_doesnt_affect_other_servers_test(t):
    port1, port2 = DEFAULT_PORT, DEFAULT_PORT + 1

    async def check_server(port):
        c = t.new_client(EchoClient, port)
        await c.connect()
        await c.echo()
        await c.disconnect()

    await t.start_server("EchoServer", "server1", port1)
    await t.start_server("EchoServer", "server2", port2)
    await check_server(port1)
    await check_server(port2)
    await t.stop_server("server1")
    await check_server(port2)


async def stopping_server_with_active_connections_test(t):
    clients = [t.new_client(EchoClient) for _ in range(MAX_CONNECTIONS)]
    await t.start_server("SimpleServer", "server1")
    for c in clients:
        await c.connect()
    waits = [asyncio.ensure_future(c.wait_until_closed()) for c in clients]
    await t.stop_server("server1")
    await asyncio.gather(*waits)


async def tcp_client_closes_on_destruction_test(t):
    client = t.new_client()
    await t.start_server("TcpClientClosesOnDestructionTestServer")
    await client.connect()
    closed = asyncio.ensure_future(client.wait_until_closed())
    await t.new_client().connect()
    await closed


def stress_test(total_conns):
    async def run(t):
        max_failed = 6
        failed = 0
        sem = asyncio.Semaphore(MAX_CONNECTIONS)
        await t.start_server("EchoServer")

        async def one():
            nonlocal failed
            async with sem:
                c = t.new_client(EchoClient)
                c.timeout = 60.0
                try:
                    await asyncio.sleep(random.random() * 0.5)
                    await c.connect()
                    await c.echo()
                    await asyncio.sleep(random.random() * 0.5)
                    await c.disconnect()
                except Exception:
                    c.close()
                    failed += 1
                    if failed >= max_failed:
                        raise
        await asyncio.gather(*(one() for _ in range(total_conns)))
    return run


async def main(argv):
    DeviceControl.url = argv[1]
    stress = int(argv[2]) if len(argv) > 2 else 500
    tests = [
        ("EchoTest", echo_test),
        ("MaxConnectionsTest", max_connections_test),
        ("ExtraConnectionTest", extra_connection_test),
        ("MaxServersTest", max_servers_test),
        ("NoServerSocketLeakOnNetworkDisconnectTest",
         no_server_socket_leak_on_network_disconnect_test),
        ("StoppedServerDoesntAffectOtherServersTest",
         stopped_server_doesnt_affect_other_servers_test),
        ("StoppingServerWithActiveConnectionsTest",
         stopping_server_with_active_connections_test),
        ("TcpClientClosesOnDestructionTest", tcp_client_closes_on_destruction_test),
        ("StressTest", stress_test(stress)),
    ]
    only = set(argv[3:])
    for name, func in tests:
        if only and name not in only:
            continue
        t = Test(name, func)
        try:
            await asyncio.wait_for(t.run(), 300)
            out = {"test": name, "passed": True, "error": None}
        except Exception as e:
            out = {"test": name, "passed": False,
                   "error": "%s: %s" % (type(e).__name__, e)}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv))
