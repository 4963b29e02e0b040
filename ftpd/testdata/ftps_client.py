"""Python ftplib over explicit FTPS (AUTH TLS, PROT P): upload, then download and compare.

Usage: ftps_client.py HOST PORT USER PASSWORD MAX_TLS(1.2|1.3) plain|reuse

ftplib's FTP_TLS wraps each data connection in a new TLS session. "reuse" is the subclass that
is commonly used against servers requiring TLS session reuse (vsftpd's require_ssl_reuse): it
hands the data connection the control connection's session.
"""
import ftplib
import io
import ssl
import sys

host, port, user, password, max_tls, variant = sys.argv[1:7]

ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
if max_tls == "1.2":
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2


class ReusingFTP_TLS(ftplib.FTP_TLS):
    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size


cls = ReusingFTP_TLS if variant == "reuse" else ftplib.FTP_TLS
f = cls(context=ctx, timeout=10)
f.connect(host, int(port))
f.auth()
f.login(user, password)
f.prot_p()
payload = b"ftplib payload " * 1000
f.storbinary("STOR python.bin", io.BytesIO(payload))
out = io.BytesIO()
f.retrbinary("RETR python.bin", out.write)
if out.getvalue() != payload:
    sys.exit("downloaded content differs")
f.quit()
print("ok")
