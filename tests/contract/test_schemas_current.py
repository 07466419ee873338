"""(d) The committed schemas are exactly what the pinned official client generates: a newer client
(or a changed generator) fails here with a readable diff of the declared shapes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.contract import regenerate


def test_the_committed_schemas_are_regenerated_byte_for_byte(contract_packages: Path) -> None:
    changes = regenerate.check(contract_packages)
    assert not changes, (
        "The official client's types no longer match tests/contract/schemas. Review what changed, then run "
        "python tests/contract/regenerate.py and adapt the models, the simulator and the CRD:\n" + changes
    )


def test_a_changed_client_type_shows_up_as_a_diff_naming_the_field(tmp_path: Path) -> None:
    # What a newer client looks like to the check above: here, a status value added to the GET type.
    regenerated = tmp_path / "regenerated"
    shutil.copytree(regenerate.SCHEMAS, regenerated)
    path = regenerated / "strict.GetLlmModelDeployment.json"
    schema = json.loads(path.read_text())
    schema["properties"]["status"]["enum"].append("hibernating")
    path.write_text(json.dumps(schema, indent=2) + "\n")
    changes = regenerate.diff(regenerate.SCHEMAS, regenerated)
    assert "--- committed/strict.GetLlmModelDeployment.json" in changes
    assert '+        "hibernating"' in changes
    assert changes.count("+++ ") == 1, "only the changed file is listed"


def test_every_schema_the_tests_use_is_committed() -> None:
    names = {path.stem for path in regenerate.SCHEMAS.glob("*.json")}
    assert names == {
        "strict.GetLlmModelDeployment",
        "strict.GetLlmModelDeploymentResponse",
        "strict.ListLlmModelDeploymentsResponse",
        "strict.CreateLlmModelDeploymentRequest",
        "strict.UpdateLlmModelDeploymentRequest",
        "lenient.GetLlmModelDeployment",
        "lenient.ListLlmModelDeploymentsResponse",
    }
