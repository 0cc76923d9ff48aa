"""osken-manager for the tests: os-ken 4 ships no osken-manager script,
so this does what it did: read os-ken's options, load the application
modules named on the command line into os-ken's AppManager and run them.
Only 127.0.0.1 is listened on.

    python tests/osken_manager.py --ofp-tcp-listen-port 6653 tests/osken_apps/learning_switch.py"""
import sys

from os_ken import cfg
from os_ken.base import app_manager


def main(argv):
    cfg.CONF.register_cli_opts([cfg.MultiStrOpt("app", positional=True, default=[], help="application module")])
    cfg.CONF(args=["--ofp-listen-host", "127.0.0.1"] + argv, project="os_ken", default_config_files=[])
    app_manager.AppManager.run_apps(cfg.CONF.app)


if __name__ == "__main__":
    main(sys.argv[1:])
