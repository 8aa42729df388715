"""Site-packages on demand, for an interpreter started with `-S`.

`python3 -I -S qpsmtpd.py` skips the `site` module's start-up work (about
2.5 ms of a per-connection process's CPU: the .pth files of every
installed package are read and run).  The optional libraries of some
plugins (dnspython, pyspf, dkimpy, redis-py ...) live in site-packages, so
a finder at the end of `sys.meta_path` adds the site-packages directories
to `sys.path` the first time an import finds nothing elsewhere, and then
retries it.  A session whose plugins need no such library never pays for
it.  The .pth files are still not run: the libraries the plugins use need
none.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec


class SitePackagesOnDemand:
    """The last finder: on the first top-level import nothing else found, add site-packages."""

    @classmethod
    def find_spec(cls, name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        if path is not None:  # a submodule: its package was found, so site-packages is on the path
            return None
        uninstall()
        sys.path.extend(directory for directory in site_directories() if directory not in sys.path)
        finder = sys.modules["_frozen_importlib_external"].PathFinder
        return finder.find_spec(name)


def site_directories() -> list[str]:
    """The site-packages directories `site` would have added: a venv's own, else the system's."""
    import os

    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    venv = os.path.dirname(os.path.dirname(os.path.abspath(sys.executable)))
    config = os.path.join(venv, "pyvenv.cfg")
    directories: list[str] = []
    if os.path.isfile(config):  # under -S, Python 3.11 leaves venv detection to site.main(): do it here
        directories.append(os.path.join(venv, "lib", version, "site-packages"))
        with open(config) as handle:
            if "include-system-site-packages = true" not in handle.read().replace("\t", " "):
                return directories
    import site  # the module only: its main(), which -S skipped, is not run

    return directories + site.getsitepackages()


def install() -> None:
    """Under -S only: make site-packages reachable when a plugin imports from it."""
    if sys.flags.no_site and SitePackagesOnDemand not in sys.meta_path:
        sys.meta_path.append(SitePackagesOnDemand)


def uninstall() -> None:
    if SitePackagesOnDemand in sys.meta_path:
        sys.meta_path.remove(SitePackagesOnDemand)
