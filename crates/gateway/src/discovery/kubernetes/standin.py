"""A stand-in Kubernetes API server for the EndpointSlice provider's tests (no real API server
installs on the test machines). It serves one list of EndpointSlices and watch streams of
line-delimited JSON events, as the API server does. The test drives it:

POST /control {"type": "ADDED" | "MODIFIED" | "DELETED", "object": slice}  changes a slice
POST /control {"type": "GONE"}   sends a 410 ERROR event (resourceVersion too old) on every watch
POST /control {"type": "CLOSE"}  ends every watch, as the API server does after its timeout
GET /watchers                    the number of open watches
GET /watches                     the number of watches ever started

Prints its port on the first line of stdout."""

import json
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
slices = {}
version = 1
watchers = []
started = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/watchers":
            with lock:
                return self.send_json(200, {"watchers": len(watchers)})
        if self.path == "/watches":
            with lock:
                return self.send_json(200, {"watches": started})
        if "/endpointslices?" not in self.path:
            return self.send_json(404, {"kind": "Status", "code": 404, "message": "not found"})
        if "watch=true" in self.path:
            return self.watch()
        with lock:
            items, rv = list(slices.values()), str(version)
        self.send_json(200, {"kind": "EndpointSliceList", "metadata": {"resourceVersion": rv}, "items": items})

    def watch(self):
        global started
        events = queue.Queue()
        with lock:
            watchers.append(events)
            started += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        try:
            while True:
                event = events.get()
                if event is None:
                    break
                data = (json.dumps(event) + "\n").encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass
        finally:
            with lock:
                if events in watchers:
                    watchers.remove(events)
        self.close_connection = True

    def do_POST(self):
        global version
        command = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        kind = command["type"]
        with lock:
            version += 1
            if kind == "CLOSE":
                events = [None]
            elif kind == "GONE":
                # The API server ends a watch after an ERROR event.
                gone = {"kind": "Status", "code": 410, "message": "too old resource version"}
                events = [{"type": "ERROR", "object": gone}, None]
            else:
                obj = command["object"]
                obj["metadata"]["resourceVersion"] = str(version)
                if kind == "DELETED":
                    slices.pop(obj["metadata"]["name"], None)
                else:
                    slices[obj["metadata"]["name"]] = obj
                events = [{"type": kind, "object": obj}]
            for watcher in watchers:
                for event in events:
                    watcher.put(event)
        self.send_json(200, {})


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
