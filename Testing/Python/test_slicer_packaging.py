"""The extension's build files package every file: the packager drops whatever is not listed.

The module's files are listed explicitly and compared with the folder; DiffusionPEFTLib and the
shared Resources/ are globbed (others add files all the time), and the test evaluates the same globs
in Python. A configure run against a stub Slicer proves CMake itself sees every file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import slicer_standins

slicer_standins.install()

REPOSITORY = slicer_standins.REPOSITORY
MODULE = slicer_standins.MODULE_FOLDER
LIBRARY = REPOSITORY / "DiffusionPEFTLib"
SHARED_RESOURCES = REPOSITORY / "Resources"

STUB_SLICER_CONFIG = """
set(Slicer_USE_FILE ${CMAKE_CURRENT_LIST_DIR}/empty.cmake)
set(Slicer_EXTENSION_GENERATE_CONFIG ${CMAKE_CURRENT_LIST_DIR}/empty.cmake)
set(Slicer_EXTENSION_CPACK ${CMAKE_CURRENT_LIST_DIR}/empty.cmake)
function(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MY "WITH_GENERIC_TESTS;WITH_SUBDIR;VERBOSE" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  foreach(kind SCRIPTS RESOURCES)
    foreach(file ${MY_${kind}})
      if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${file})
        message(FATAL_ERROR "${MY_NAME} lists a missing file: ${file}")
      endif()
      file(APPEND ${RECORD} "${MY_NAME} ${kind} ${CMAKE_CURRENT_SOURCE_DIR}/${file}\\n")
    endforeach()
  endforeach()
endfunction()
function(slicer_add_python_unittest)
endfunction()
"""


def cmakeList(cmakeFile: Path, variable: str) -> list[str]:
    """Items of ``set(VARIABLE …)`` with ${MODULE_NAME} expanded."""
    text = cmakeFile.read_text()
    body = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S).group(1)
    moduleName = re.search(r"set\(MODULE_NAME (\w+)\)", text).group(1)
    return [item.replace("${MODULE_NAME}", moduleName) for item in body.split()]


def filesUnder(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def libraryGlob() -> set[Path]:
    """The top-level CMakeLists.txt globs, evaluated in Python."""
    files = set(LIBRARY.rglob("*.py"))
    for suffix in ("json", "txt", "csv"):
        files |= set(LIBRARY.rglob(f"*.{suffix}"))
    return files | filesUnder(SHARED_RESOURCES) if SHARED_RESOURCES.is_dir() else files


def test_module_lists_every_script_and_resource():
    cmakeFile = MODULE / "CMakeLists.txt"
    listed = {MODULE / item for item in cmakeList(cmakeFile, "MODULE_PYTHON_SCRIPTS")}
    listed |= {MODULE / item for item in cmakeList(cmakeFile, "MODULE_PYTHON_RESOURCES")}
    onDisk = {p for p in filesUnder(MODULE) if p.suffix == ".py" or "Resources" in p.relative_to(MODULE).parts}
    assert listed == onDisk


def test_library_glob_covers_every_backend_file():
    assert {p for p in filesUnder(LIBRARY) if p.suffix == ".py"} <= libraryGlob()
    unpackaged = filesUnder(LIBRARY) - libraryGlob()
    assert not unpackaged, f"add these suffixes to the DiffusionPEFTLib glob in CMakeLists.txt: {sorted(unpackaged)}"


def test_module_requirements_follow_the_backend_dependencies():
    from DiffusionPEFTSlicer import dependencies

    project = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]
    backend = [r.replace(" ", "") for r in project["dependencies"]]
    torch = [r for r in backend if dependencies.distributionName(r) == "torch"]
    assert torch == [f"torch{dependencies.TORCH_REQUIREMENT}"]
    assert dependencies.requirements() == [r for r in backend if r not in torch]


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_cmake_configures_against_a_stub_slicer_and_sees_every_file(tmp_path):
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "SlicerConfig.cmake").write_text(STUB_SLICER_CONFIG)
    (stub / "empty.cmake").write_text("")
    record = tmp_path / "packaged.txt"
    completed = subprocess.run(
        ["cmake", "-S", str(REPOSITORY), "-B", str(tmp_path / "build"), f"-DSlicer_DIR={stub}", f"-DRECORD={record}",
         "-DBUILD_TESTING=ON", "-DCMAKE_C_COMPILER_WORKS=1", "-DCMAKE_CXX_COMPILER_WORKS=1"],
        capture_output=True, text=True)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    packaged = {}
    for line in record.read_text().splitlines():
        target, kind, path = line.split(" ", 2)
        packaged.setdefault(target, set()).add(Path(path).resolve())
    assert packaged["DiffusionPEFTLib"] == {p.resolve() for p in libraryGlob()}
    assert MODULE / "DiffusionPEFT.py" in packaged["DiffusionPEFT"]
