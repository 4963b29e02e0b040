"""A strict FTP client for the tests through NAT (nat_test.go, tcp_nat_test.go).

Usage: nat_client.py HOST PORT USER PASSWORD MODE [ARGS...]

Modes:
  pasv DOWNLOAD UPLOAD            PASV download and upload with ftplib, trusting the 227
                                  address as given;
  epsv DOWNLOAD UPLOAD            EPSV download and upload, data sockets opened by hand to the
                                  control host and the port of the 229 reply;
  pasv-must-fail DOWNLOAD UPLOAD  a PASV download expected to fail to connect (exit 3 when it
                                  does);
  slow-stor NAME SIZE SECONDS     upload SIZE bytes spread over SECONDS, then wait for the
                                  final reply (exit 4 when none came);
  hold-idle, hold-pasv, hold-retr NAME, hold-stor NAME
                                  get a session into that state (logged in; an EPSV port
                                  reserved; a download read a little; an upload sent a little),
                                  print "ready" and sleep, holding everything open.

Every mode but the hold ones prints one JSON object on its last line. Exit codes: 0 ok, 3 the
PASV data connection failed, 4 no final reply, 1 anything else.
"""
import ftplib
import hashlib
import io
import json
import re
import socket
import sys
import time

host, port, user, password, mode = sys.argv[1:6]
args = sys.argv[6:]
port = int(port)
TIMEOUT = 4  # seconds: the wait for a reply, and for every socket operation
result = {}


def done(code, **kw):
    result.update(kw)
    print(json.dumps(result))
    sys.exit(code)


def connect():
    # The daemon may still be starting: retry the control connection for a few seconds.
    deadline = time.time() + 10
    while True:
        ftp = ftplib.FTP(timeout=TIMEOUT)
        try:
            ftp.connect(host, port)
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)
    ftp.login(user, password)
    ftp.voidcmd('TYPE I')
    # Record the 227/229 replies ftplib sees.
    send = ftp.sendcmd

    def recording_sendcmd(cmd):
        resp = send(cmd)
        if resp.startswith('227'):
            result['pasv_reply'] = resp
        if resp.startswith('229'):
            result['epsv_reply'] = resp
        return resp
    ftp.sendcmd = recording_sendcmd
    return ftp


def epsv(ftp):
    resp = ftp.sendcmd('EPSV')
    m = re.search(r'\(\|\|\|(\d+)\|\)', resp)
    if not m:
        done(1, error='bad EPSV reply: ' + resp)
    return int(m.group(1))


def data_socket(ftp):
    # EPSV names only a port: connect to the host of the control connection.
    return socket.create_connection((host, epsv(ftp)), timeout=TIMEOUT)


def hold():
    print('ready', flush=True)
    time.sleep(600)


def transfers(ftp, download, upload):
    payload = hashlib.sha256(mode.encode()).digest() * (3 * 1024 * 1024 // 32)
    payload += b'tail-' + mode.encode()
    if mode in ('pasv', 'pasv-must-fail'):
        ftp.set_pasv(True)
        ftp.trust_server_pasv_ipv4_address = True  # connect exactly where the 227 reply says
        h = hashlib.sha256()
        try:
            ftp.retrbinary('RETR ' + download, h.update, blocksize=65536)
        except (OSError, EOFError) as e:
            if mode == 'pasv-must-fail' and 'pasv_reply' in result:
                done(3, error='PASV data connection failed: %r' % e)
            raise
        result['download_sha256'] = h.hexdigest()
        if mode == 'pasv':
            ftp.storbinary('STOR ' + upload, io.BytesIO(payload), blocksize=65536)
            result['upload_sha256'] = hashlib.sha256(payload).hexdigest()
        return
    h = hashlib.sha256()
    s = data_socket(ftp)
    ftp.sendcmd('RETR ' + download)  # 150
    while True:
        b = s.recv(65536)
        if not b:
            break
        h.update(b)
    s.close()
    ftp.voidresp()  # 226
    result['download_sha256'] = h.hexdigest()
    s = data_socket(ftp)
    ftp.sendcmd('STOR ' + upload)  # 150
    s.sendall(payload)
    s.close()
    ftp.voidresp()  # 226
    result['upload_sha256'] = hashlib.sha256(payload).hexdigest()


def slow_stor(ftp, name, size, seconds):
    chunks = 64
    payload = hashlib.sha256(name.encode()).digest() * (size // 32 + 1)
    payload = payload[:size]
    step = len(payload) // chunks
    s = data_socket(ftp)
    ftp.sendcmd('STOR ' + name)  # 150
    start = time.time()
    for i in range(chunks):
        end = len(payload) if i == chunks - 1 else (i + 1) * step
        s.sendall(payload[i * step:end])
        time.sleep(seconds / chunks)
    s.close()
    result['sent_s'] = time.time() - start
    result['upload_sha256'] = hashlib.sha256(payload).hexdigest()
    try:
        result['final'] = ftp.voidresp()
    except (socket.timeout, TimeoutError) as e:
        done(4, error='no reply within %ds after the upload: %r' % (TIMEOUT, e))


try:
    ftp = connect()
    if mode in ('pasv', 'pasv-must-fail', 'epsv'):
        transfers(ftp, args[0], args[1])
    elif mode == 'slow-stor':
        slow_stor(ftp, args[0], int(args[1]), float(args[2]))
    elif mode == 'hold-idle':
        hold()
    elif mode == 'hold-pasv':
        epsv(ftp)
        hold()
    elif mode == 'hold-retr':
        s = data_socket(ftp)
        ftp.sendcmd('RETR ' + args[0])  # 150
        s.recv(65536)
        hold()  # and never read again: the daemon's sends fill the buffers and wait
    elif mode == 'hold-stor':
        s = data_socket(ftp)
        ftp.sendcmd('STOR ' + args[0])  # 150
        s.sendall(b'x' * 65536)
        hold()
    else:
        done(1, error='unknown mode ' + mode)
    ftp.quit()
except Exception as e:
    done(1, error='%s: %r' % (type(e).__name__, e))
done(0)
