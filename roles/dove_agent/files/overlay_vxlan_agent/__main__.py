# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Entry point: `python3 /path/to/overlay_vxlan_agent run --config ...`.

Python runs a directory's __main__.py with the directory itself on sys.path; the directory
above it (where the role also puts the collection's module_utils, as
ansible_collections/overlay/vxlan/plugins/module_utils/) is what the package needs.
"""

import os
import sys

if __package__ in (None, ""):
    _HERE = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or ".") == _HERE:
        del sys.path[0]  # the package's own files are not top-level modules
    sys.path.insert(0, os.path.dirname(_HERE))

from overlay_vxlan_agent.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
