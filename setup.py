"""Packaging for tb-varscope: the `tb-varscope` command and the `varscope` TensorBoard plugin."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
# tf-keras requires the `tensorflow` distribution itself: tensorflow-cpu beside it would be a second copy (270 MB more).
DEMO = ["tensorflow>=2.21", "tf-keras>=2.21", "keras>=3.14"]

setup(
    name="tb-varscope",
    version="0.1.0",
    description="Find and explain TensorBoard histogram tags that collide across layers, grouped by variable path.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    license_files=["LICENSE"],
    python_requires=">=3.10",
    packages=find_packages(include=["tb_varscope_plugin", "tb_varscope_plugin.*"]),
    # The tab's ES modules live in frontend/ at the top of the repository; tb_varscope_plugin/frontend links to it,
    # so an editable install serves them in place and a wheel carries them inside the package.
    package_data={"tb_varscope_plugin": ["frontend/*.js", "frontend/*.css"]},
    install_requires=[
        "tensorboard>=2.21",
        "google-crc32c>=1.5",
        "h5py>=3.8",
    ],
    extras_require={
        # TensorFlow and Keras write the demo's logs and checkpoints; the plugin itself never imports them.
        "demo": DEMO,
        "test": DEMO
        + [
            "pytest>=8",
            "ruff",
            "mypy>=1.10",
            "hypothesis>=6.100",
            "playwright>=1.45",
            "tensorboardX>=2.6",
            "safetensors>=0.4",
            # Remote logdirs: an S3 server on 127.0.0.1 and TensorBoard's S3 and fsspec filesystems.
            "moto[server]>=5",
            "boto3",
            "fsspec",
        ],
        # The PyTorch writer tests skip without it; scripts/test.sh installs a pinned build.
        "torch": ["torch>=2.0"],
    },
    entry_points={
        "console_scripts": ["tb-varscope = tb_varscope_plugin.command:main"],
        "tensorboard_plugins": ["varscope = tb_varscope_plugin.server.plugin:VarScopeLoader"],
    },
    classifiers=[
        "Framework :: TensorFlow",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
