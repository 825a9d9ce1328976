"""sase_mm: SASE attention search and blocks for OpenMMLab (arXiv 2411.08333)."""
import os
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.develop import develop

HERE = os.path.dirname(os.path.abspath(__file__))


def add_mim_extension():
    """Mirrors configs/ and tools/ into sase_mm/.mim so that installed
    packages resolve ``sase_mm::path/to/config.py`` (mmengine looks for the
    configs of package ``pkg`` under ``pkg/.mim/configs``). A symlink in
    editable installs, a copy otherwise."""
    mim = os.path.join(HERE, 'sase_mm', '.mim')
    os.makedirs(mim, exist_ok=True)
    for name in ('configs', 'tools'):
        src, dst = os.path.join(HERE, name), os.path.join(mim, name)
        if not os.path.exists(src):
            continue
        if os.path.islink(dst) or os.path.isfile(dst):
            os.remove(dst)
        elif os.path.isdir(dst):
            shutil.rmtree(dst)
        try:
            os.symlink(os.path.relpath(src, mim), dst)
        except OSError:
            shutil.copytree(src, dst)
    # mmengine reads this index before falling back to .mim/configs/<path>.
    with open(os.path.join(mim, 'model-index.yml'), 'w') as f:
        f.write('Import: []\n')


class BuildPy(build_py):
    def run(self):
        add_mim_extension()
        super().run()


class Develop(develop):
    def run(self):
        add_mim_extension()
        super().run()


def read_requirements(path):
    with open(os.path.join(HERE, path)) as f:
        return [line.split('#')[0].strip() for line in f
                if line.split('#')[0].strip() and not line.startswith('-')]


add_mim_extension()  # also for PEP 660 editable installs (no develop cmd)

version = {}
with open(os.path.join(HERE, 'sase_mm', 'version.py')) as f:
    exec(f.read(), version)

setup(
    name='sase_mm',
    version=version['__version__'],
    description='SASE: searched squeeze-and-excitation attention for '
    'OpenMMLab (mmdet / mmpretrain)',
    long_description=open(os.path.join(HERE, 'README.md')).read(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('tests', 'tests.*', 'benchmarks')),
    include_package_data=True,
    package_data={'sase_mm': ['models/sase/fast/csrc/*.cpp',
                              '.mim/model-index.yml', '.mim/configs/**/*.py',
                              '.mim/tools/**/*', '.mim/tools/*']},
    python_requires='>=3.8',
    install_requires=read_requirements('requirements/runtime.txt'),
    extras_require={'tests': read_requirements('requirements/tests.txt')},
    cmdclass={'build_py': BuildPy, 'develop': Develop},
    zip_safe=False,
)
