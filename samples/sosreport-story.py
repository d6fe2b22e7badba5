#!/usr/bin/python3
"""The socket population of samples/sosreport-web3, one role per process (make-sosreport.sh starts
each through a symlink named after the role, so that its comm is that name).

  leaky-api  10.20.0.3:8080  answers, then never closes a connection the client ended: CLOSE_WAIT
  poller     -> :8080        30 requests, closing each after the answer (its side: FIN_WAIT2)
  cache      10.20.0.3:6379  answers and closes when the client has closed (the healthy server)
  batch      -> :6379        250 short requests, closing first: 250 TIME_WAIT on its side
  web        -> :6379        6 connections kept open (ESTABLISHED)
  resolver   10.20.0.3:5353  a UDP socket
  agent      127.0.0.1:9000  (in namespace blue) one connection from itself, kept open
Each role prints "ready" on stdout when its sockets are in place, then sleeps until killed.
"""
import os
import socket
import sys
import threading
import time

ADDR = "10.20.0.3"


def ready():
    print("ready", flush=True)


def serve(port, close_after_client):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((ADDR, port))
    listener.listen(512)
    kept = []

    def handle(conn):
        while True:
            data = conn.recv(4096)
            if not data:
                if close_after_client:
                    conn.close()
                return  # the leak: the socket stays in CLOSE_WAIT, never closed
            conn.sendall(b"ok\n")

    def accept_loop():
        while True:
            conn, _ = listener.accept()
            kept.append(conn)
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    # A UNIX socket pair to a helper thread, as a service talking to its own worker would.
    a, b = socket.socketpair()
    kept.extend([a, b])
    ready()
    while True:
        time.sleep(3600)


def client(port, count, keep_open):
    conns = []
    for _ in range(count):
        c = socket.create_connection((ADDR, port))
        c.sendall(b"GET\n")
        c.recv(16)
        if keep_open:
            conns.append(c)
        else:
            c.close()
    ready()
    while True:
        time.sleep(3600)


def resolver():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ADDR, 5353))
    ready()
    while True:
        time.sleep(3600)


def agent():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 9000))
    listener.listen(16)
    c = socket.create_connection(("127.0.0.1", 9000))
    s, _ = listener.accept()
    ready()
    while True:
        time.sleep(3600)
    return c, s


role = open("/proc/self/comm").read().strip()  # the name the program was started by
if role == "leaky-api":
    serve(8080, close_after_client=False)
elif role == "cache":
    serve(6379, close_after_client=True)
elif role == "poller":
    client(8080, 30, keep_open=False)
elif role == "batch":
    client(6379, 250, keep_open=False)
elif role == "web":
    client(6379, 6, keep_open=True)
elif role == "resolver":
    resolver()
elif role == "agent":
    agent()
else:
    sys.exit(f"unknown role {role}")
