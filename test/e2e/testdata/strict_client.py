"""A strict FTP client for the e2e tests.

It trusts the address in PASV replies as given (curl and lftp quietly replace a wrong one with
the control connection's address), so a transfer only works when the server advertises an
address the client can really reach. Usage:

  strict_client.py HOST PORT USER PASSWORD SOURCE_IP MODE upload LOCAL REMOTE
  strict_client.py HOST PORT USER PASSWORD SOURCE_IP MODE download REMOTE LOCAL

MODE is pasv or epsv. SOURCE_IP binds the client's side of every connection (the client's
"network"). It prints the server's passive reply on the first line, then "ok"; on failure the
passive reply (when there was one) and then "error: ...".
"""
import ftplib
import socket
import sys


class StrictFTP(ftplib.FTP):
    trust_server_pasv_ipv4_address = True

    def __init__(self, mode, **kw):
        super().__init__(**kw)
        self.mode = mode
        self.last_passive = ""

    def makepasv(self):
        if self.mode == "epsv":
            reply = self.sendcmd("EPSV")
            self.last_passive = reply
            port = ftplib.parse229(reply, self.sock.getpeername())[1]
            return self.sock.getpeername()[0], port
        reply = self.sendcmd("PASV")
        self.last_passive = reply
        return ftplib.parse227(reply)


ftp = None


def main():
    global ftp
    host, port, user, password, source, mode, op, a, b = sys.argv[1:10]
    # A generous per-operation timeout: a loaded CI machine (two cores, several clusters) can
    # stall a transfer for seconds. A wrong PASV address still fails at once: the test networks
    # refuse unreachable pod IPs instead of dropping them.
    ftp = StrictFTP(mode, source_address=(source, 0), timeout=20)
    ftp.connect(host, int(port))
    ftp.login(user, password)
    if op == "upload":
        with open(a, "rb") as f:
            ftp.storbinary("STOR " + b, f)
    else:
        with open(b, "wb") as f:
            ftp.retrbinary("RETR " + a, f.write)
    print(ftp.last_passive)
    ftp.quit()
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except (OSError, ftplib.Error, EOFError) as e:
        if ftp is not None and ftp.last_passive:
            print(ftp.last_passive)
        print("error: %s" % e)
        sys.exit(1)
