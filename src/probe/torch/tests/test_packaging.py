"""The probe as a pip package: pyproject.toml's version is the extension's (package.json), and the
installed package's probe_version() says the same."""
import json
import os
import re
import unittest

from gradscope_probe.probe import probe_version

from .helpers import PROBE_PARENT, REPO


class PackagingTest(unittest.TestCase):
    def test_pyproject_version_is_package_json_version(self):
        with open(os.path.join(REPO, "package.json"), encoding="utf-8") as f:
            want = json.load(f)["version"]
        with open(os.path.join(PROBE_PARENT, "pyproject.toml"), encoding="utf-8") as f:
            text = f.read()
        project = text.split("[project]", 1)[1].split("\n[", 1)[0]
        m = re.search(r'^version\s*=\s*"([^"]+)"', project, re.M)
        self.assertIsNotNone(m, "no version in [project]")
        self.assertEqual(m.group(1), want, "pyproject.toml's version must follow package.json's")
        self.assertEqual(re.search(r'^name\s*=\s*"([^"]+)"', project, re.M).group(1), "gradscope_probe")
        self.assertEqual(probe_version(), want)


if __name__ == "__main__":
    unittest.main()
