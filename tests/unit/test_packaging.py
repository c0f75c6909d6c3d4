"""Every package folder is listed in pyproject.toml: a non-editable install (a wheel, the Dockerfile's)
ships only the listed packages, so a folder left out imports in the checkout and fails when installed."""
import tomllib

from support.helpers import REPO


def test_every_package_folder_is_listed() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {folder: name for name, folder in config["package-dir"].items()}
    found = set()
    for folder, name in folders.items():
        for init in (REPO / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO / folder).parts
            if "__pycache__" not in parts:
                found.add(".".join((name, *parts)))
    assert found - set(config["packages"]) == set()


def test_test_modules_have_unique_names() -> None:
    """pytest imports test modules by basename (no packages): two with one name stop the whole collection."""
    names = [p.name for p in (REPO / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
