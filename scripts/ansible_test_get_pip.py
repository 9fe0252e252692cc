# overlay.vxlan offline get-pip for ansible-test (scripts/sanity.sh installs it)
"""Stand-in for the get-pip.py that ansible-test downloads to bootstrap pip into its venvs.

ansible-test creates every sanity virtual environment without pip and then runs the get-pip
script it downloads from a host this workplace cannot reach (it caches the script in
~/.ansible/test/cache/get_pip_<version>.py and uses a cached copy when there is one).  This file
does what get-pip.py does, from what is on the machine: it runs pip from the wheel bundled with
the interpreter's ensurepip (a wheel is importable as a zip) to install the requested pip from
the package index that pip is configured for.  The get-pip-only options (--no-setuptools,
--no-wheel) are dropped: pip install does not know them and installs neither unless asked.
"""

import ensurepip
import glob
import os
import runpy
import sys

GET_PIP_ONLY = {'--no-setuptools', '--no-wheel'}


def main():
    """Install pip (and the packages named in argv) into the running interpreter."""
    bundled = os.path.join(os.path.dirname(ensurepip.__file__), '_bundled')
    wheels = sorted(glob.glob(os.path.join(bundled, 'pip-*.whl')))
    if not wheels:
        sys.exit('get-pip (overlay.vxlan offline stand-in): no pip wheel in %s' % bundled)
    sys.path.insert(0, wheels[-1])
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
    sys.argv = ['pip', 'install', '--quiet'] + args
    runpy.run_module('pip', run_name='__main__', alter_sys=True)


if __name__ == '__main__':
    main()
