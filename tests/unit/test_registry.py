"""The registry is the one list of services: every service folder is in it, everything else
derives from it, and the import contracts cover services that do not exist yet."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from google.protobuf import descriptor_pool
from pydantic import ValidationError

from gateway.frontdoor.chat_service import SERVING, chat_service
from gateway.paths import ROOT
from services.core.registry import NAMES, SERVICES, implementing, selected
from services.core.settings import Settings
from tests.project_copy import copy_project, lint_imports

# Code that is no service's own and must therefore name none (it reads the registry instead):
# the kernel, the gateway and front door, the tools, `make run`'s runner, the benchmarks' runner
# (`make bench`) and the tests' shared fixtures.
SHARED_CODE = [ROOT / "services" / "core", ROOT / "gateway", ROOT / "tools", ROOT / "runner"]
SHARED_FILES = [ROOT / "bench" / "__main__.py", *sorted((ROOT / "tests").rglob("conftest.py"))]


def test_every_service_folder_is_registered_in_the_order_of_its_port() -> None:
    folders = {
        path.name
        for path in (ROOT / "services").iterdir()
        if (path / "__init__.py").exists() and path.name != "core"
    }

    assert set(NAMES) == folders
    assert [s.default_port for s in SERVICES] == sorted(s.default_port for s in SERVICES)
    for spec in SERVICES:
        assert set(spec.peers) <= set(NAMES), spec.name
        assert (ROOT / "services" / spec.name / "migrations").is_dir(), spec.name
        __import__(f"r3mes.{spec.name}.v1.{spec.name}_pb2")
        assert descriptor_pool.Default().FindServiceByName(spec.proto_service), spec.name


def test_each_service_has_a_port_and_a_target_setting_whose_default_is_its_declared_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    defaults = Settings(_env_file=None)
    for spec in SERVICES:
        assert defaults.port_of(spec.name) == spec.default_port
        assert not defaults.target_set(spec.name)

    for number, spec in enumerate(SERVICES):
        monkeypatch.setenv(spec.port_setting, str(6000 + number))
        monkeypatch.setenv(spec.target_setting, f"{spec.name}.example:{7000 + number}")
    chosen = Settings(_env_file=None)
    for number, spec in enumerate(SERVICES):
        assert chosen.port_of(spec.name) == 6000 + number
        assert chosen.target_of(spec.name) == f"{spec.name}.example:{7000 + number}"


def test_no_kernel_setting_is_named_after_a_service() -> None:
    named = [field for field in Settings.model_fields if set(field.split("_")) & set(NAMES)]

    assert named == []


def test_a_port_or_target_of_a_service_nobody_registered_is_refused() -> None:
    with pytest.raises(ValidationError, match="no service is named billing"):
        Settings(_env_file=None, ports={"billing": 1})
    with pytest.raises(ValidationError, match="no service is named billing"):
        Settings(_env_file=None, targets={"billing": "billing:1"})


def test_a_process_hosts_all_or_the_named_services_and_refuses_an_unknown_one() -> None:
    assert selected("all") == list(SERVICES)
    assert [s.name for s in selected("credits, users")] == ["users", "credits"]
    with pytest.raises(ValueError, match="unknown services \\['billing'\\]"):
        selected("users,billing")


def test_a_client_of_an_api_finds_the_service_implementing_it_or_is_told_none_does() -> None:
    assert chat_service().name == "serving"
    assert chat_service().proto_service == SERVING == "r3mes.serving.v1.ServingService"
    with pytest.raises(LookupError) as refused:
        implementing("r3mes.billing.v1.BillingService")
    assert str(refused.value) == "no registered service implements r3mes.billing.v1.BillingService"


def named_services(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in NAMES
    ]


def test_no_shared_code_lists_services_by_name() -> None:
    files = [*(p for folder in SHARED_CODE for p in folder.rglob("*.py")), *SHARED_FILES]

    naming = {str(p.relative_to(ROOT)): named_services(p) for p in files if named_services(p)}

    assert len(SHARED_FILES) >= 4  # the bench runner and the conftest.py files, found
    assert naming == {}


def test_the_makefile_names_no_service_outside_its_comments() -> None:
    service = re.compile(rf"\b({'|'.join(NAMES)})\b")
    lines = (ROOT / "Makefile").read_text().splitlines()

    naming = [line for line in lines if service.search(line.split("#", 1)[0])]

    assert naming == []


PLANTS = {
    "a new service importing another": (
        "services/billing/usecases.py",
        "from services.users import domain\n",
        "Services are independent of each other BROKEN",
    ),
    "a use case reaching grpc through a kernel module": (
        "services/users/usecases.py",
        "from services.core import clients\n",
        "even indirectlyBROKEN",
    ),
    "a domain module importing a repository": (
        "services/mining/domain.py",
        "from services.core import repository\n",
        "Domain rules use the standard library and core.errors only BROKEN",
    ),
    "a domain module of a new service importing a package": (
        "services/billing/domain.py",
        "import yaml\n",
        "Domain rules use the standard library and core.errors only BROKEN",
    ),
    "the kernel importing a service": (
        "services/core/peek.py",
        "from services.users import usecases\n",
        "of the project, it imports only itself BROKEN",
    ),
    "the gateway importing a service's code": (
        "gateway/peek.py",
        "from services.credits import usecases\n",
        "no service's code BROKEN",
    ),
}


@pytest.mark.parametrize("plant", PLANTS, ids=str)
def test_a_violation_planted_in_a_copy_makes_lint_imports_fail(plant: str, tmp_path: Path) -> None:
    copy_project(tmp_path)
    where, line, broken = PLANTS[plant]
    planted = tmp_path / where
    planted.parent.mkdir(exist_ok=True)
    (planted.parent / "__init__.py").touch()
    with planted.open("a") as module:
        module.write(line)

    linted = lint_imports(tmp_path)

    assert linted.returncode == 1, linted.stdout
    assert broken in " ".join(linted.stdout.split()), linted.stdout
