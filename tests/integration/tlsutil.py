"""Test certificates made with the openssl CLI: a CA and leaf certificates
signed by it (EC P-256 keys: fast to generate, accepted everywhere)."""
import subprocess
from pathlib import Path


def _openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{r.stderr}")


def make_ca(directory, name):
    """Writes NAME.crt / NAME.key (a self-signed CA); returns (crt, key) paths."""
    d = Path(directory)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "3",
             "-subj", f"/CN=pgmedic test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    return d / f"{name}.crt", d / f"{name}.key"


def make_cert(directory, name, ca, cn="localhost", dns=("localhost",), ips=("127.0.0.1",),
              client=False):
    """Writes NAME.crt / NAME.key signed by ca=(crt, key); returns (crt, key)."""
    d = Path(directory)
    ca_crt, ca_key = ca
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
    san = ",".join([f"DNS:{x}" for x in dns] + [f"IP:{x}" for x in ips])
    ext = ["basicConstraints=CA:FALSE",
           "keyUsage=critical,digitalSignature,keyEncipherment",
           "extendedKeyUsage=" + ("clientAuth" if client else "serverAuth")]
    if san:
        ext.append("subjectAltName=" + san)
    (d / f"{name}.ext").write_text("\n".join(ext) + "\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", str(ca_crt), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "3",
             "-extfile", f"{name}.ext", cwd=d)
    (d / f"{name}.key").chmod(0o600)
    return d / f"{name}.crt", d / f"{name}.key"
