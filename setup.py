"""sase_mm: SASE attention search and blocks for OpenMMLab (arXiv
2411.08333)."""
import os
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.develop import develop

HERE = os.path.dirname(os.path.abspath(__file__))


def add_mim_extension():
    """Checks the committed ``sase_mm/.mim`` layout that lets mmengine resolve
    ``sase_mm::path/to/config.py`` in a ``_base_`` and in ``get_config``
    (``mmengine.hub``: it reads ``pkg/.mim/model-index.yml`` and the
    metafiles it imports, and looks under ``pkg/.mim/configs``): ``configs``,
    ``tools`` and ``model-index.yml`` are committed symlinks to the
    repository's own, so a fresh clone and an editable install need nothing
    generated. Where symlinks are not available (a source archive on some
    systems) they are re-created, or copied as a last resort."""
    mim = os.path.join(HERE, 'sase_mm', '.mim')
    os.makedirs(mim, exist_ok=True)
    for name in ('configs', 'tools', 'model-index.yml'):
        src, dst = os.path.join(HERE, name), os.path.join(mim, name)
        if not os.path.exists(src) or (
                os.path.isdir(dst) if os.path.isdir(src)
                else os.path.isfile(dst)):
            continue  # intact (a working symlink or a copy)
        if os.path.lexists(dst):
            os.remove(dst)  # a broken link, or a file for a folder
        try:
            os.symlink(os.path.relpath(src, mim), dst)
        except OSError:
            if os.path.isdir(src):
                shutil.copytree(src, dst)
            else:
                shutil.copyfile(src, dst)


class BuildPy(build_py):
    def run(self):
        add_mim_extension()
        super().run()


class Develop(develop):
    def run(self):
        add_mim_extension()
        super().run()


def read_requirements(path):
    """Requirement lines of ``path`` (``-r other.txt`` followed), comments
    and blank lines dropped."""
    out = []
    with open(os.path.join(HERE, path)) as f:
        for line in f:
            line = line.split('#')[0].strip()
            if line.startswith('-r '):
                out += read_requirements(os.path.join(
                    os.path.dirname(path), line[3:].strip()))
            elif line and not line.startswith('-'):
                out.append(line)
    return out


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
                              'models/layers/csrc/*.cpp',
                              'models/layers/csrc/*.h',
                              '.mim/model-index.yml', '.mim/configs/**/*.py',
                              '.mim/tools/**/*', '.mim/tools/*']},
    python_requires='>=3.8',
    license='Apache License 2.0',
    install_requires=read_requirements('requirements/runtime.txt'),
    extras_require={
        'all': read_requirements('requirements.txt') +
        read_requirements('requirements/mminstall.txt'),
        'tests': read_requirements('requirements/tests.txt'),
        'mim': read_requirements('requirements/mminstall.txt'),
    },
    cmdclass={'build_py': BuildPy, 'develop': Develop},
    zip_safe=False,
)
