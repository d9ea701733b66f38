"""The gateway's generated certificates: made once, kept, renewed before they expire."""
from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

from cryptography import x509

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "tests" / "integration" / "playbooks" / "tls_generate.yml"
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).parent / "ansible-playbook"


def converge(ca_dir: pathlib.Path, days: int, *extra: str) -> dict[str, int]:
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".build" / "collections"))
    # The implicit localhost runs modules with this Python, which has `cryptography`.
    result = subprocess.run([str(ANSIBLE_PLAYBOOK), str(PLAYBOOK),
                             "-e", f"gateway__tls_ca_dir={ca_dir}", "-e", f"gateway__tls_days={days}", *extra],
                            env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    line = re.search(r"^localhost\s+:\s+(.*)$", result.stdout, re.MULTILINE).group(1)
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line)}


def certificate(ca_dir: pathlib.Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((ca_dir / "registry.dockyard.test.crt").read_bytes())


def test_certificate_names_the_registry_and_is_signed_by_the_ca(tmp_path):
    converge(tmp_path, 365)
    cert = certificate(tmp_path)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert names == ["registry.dockyard.test", "localhost"]
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 366
    assert oct((tmp_path / "ca.key").stat().st_mode & 0o777) == "0o600"


def test_second_run_and_check_mode_change_nothing(tmp_path):
    converge(tmp_path, 365)
    serial = certificate(tmp_path).serial_number
    assert converge(tmp_path, 365)["changed"] == 0
    assert converge(tmp_path, 365, "--check")["changed"] == 0
    assert certificate(tmp_path).serial_number == serial


def test_a_certificate_close_to_expiry_is_renewed(tmp_path):
    converge(tmp_path, 10)
    short = certificate(tmp_path)
    assert converge(tmp_path, 365)["changed"] >= 1
    renewed = certificate(tmp_path)
    assert renewed.serial_number != short.serial_number
    assert (renewed.not_valid_after_utc - short.not_valid_after_utc).days > 300
