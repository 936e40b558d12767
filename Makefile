# sam-cd — every target is idempotent and quick when already done.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := qgis python3-qgis qgis-providers python3-gdal gdal-bin python3-venv zip
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
QGIS_PROFILE_DIR ?= $(HOME)/.local/share/QGIS/QGIS3/profiles/default
DEMO_DIR ?= demo_output
PLUGIN_ZIP := dist/sam_cd_plugin.zip

export QT_QPA_PLATFORM ?= offscreen
export YOLO_OFFLINE ?= 1
export YOLO_AUTOINSTALL ?= false
export YOLO_CONFIG_DIR ?= $(CURDIR)/.ultralytics

.PHONY: setup apt test test-qgis-3.40 test-qgis-3.44 test-pyqt6 demo package wheel install-plugin bench clean

setup: apt $(VENV)/.installed

# Debian packages (QGIS, GDAL bindings, venv); installed only when one is missing.
apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages: $$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

# The venv comes from Debian's /usr/bin/python3 with system site-packages, so QGIS and GDAL stay
# importable; numpy stays < 2 for Debian's GDAL bindings.
$(VENV)/.installed: requirements.txt
	@[ -x $(PY) ] || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	@touch $@

test: setup
	$(PY) -m pytest tests -q -p no:cacheprovider
	$(PY) -m bandit -q -c bandit.yaml -r sam_cd_plugin

# The QGIS tier on QGIS 3.40 LTR (Debian trixie) and 3.44 (Debian sid), each in a debootstrap chroot
# cached under $$SAM_CD_CHROOT_CACHE (default /var/cache/sam-cd); built on first use. Needs root.
# PYTEST_ARGS overrides what runs inside (default: tests/qgis -q).
test-qgis-3.40:
	$(SUDO) ci/qgis_chroot.sh trixie $(PYTEST_ARGS)

test-qgis-3.44:
	$(SUDO) ci/qgis_chroot.sh sid $(PYTEST_ARGS)

# The Qt-only GUI modules built under PyQt6 (QGIS 4's Qt binding) in a venv of PyQt6. It sees the
# system's numpy and GDAL (QGIS 4 ships both); its own ci/pyqt6_gui_check.py shim keeps PyQt5 and
# Debian's qgis package out of reach.
PYQT6_VENV ?= build/pyqt6-venv
PYQT6_PINS := PyQt6==6.11.0 PyQt6-Qt6==6.11.2 PyQt6_sip==13.13.0
test-pyqt6: apt
	@grep -qs 'include-system-site-packages = true' $(PYQT6_VENV)/pyvenv.cfg || \
	  { rm -rf $(PYQT6_VENV) && /usr/bin/python3 -m venv --system-site-packages $(PYQT6_VENV); }
	$(PYQT6_VENV)/bin/python -m pip install -q $(PYQT6_PINS)
	$(PYQT6_VENV)/bin/python ci/pyqt6_gui_check.py

demo: setup
	@mkdir -p $(DEMO_DIR)
	$(PY) -m sam_cd_plugin detect resources/demo/before.tif resources/demo/after.tif \
	  $(DEMO_DIR)/change.tif --bands-before 3,2,1 --bands-after 3,2,1 \
	  --probability $(DEMO_DIR)/probability.tif --quicklook $(DEMO_DIR)/quicklook.png

package: $(PLUGIN_ZIP)
$(PLUGIN_ZIP): metadata.txt LICENSE $(shell find sam_cd_plugin resources -type f -not -path '*/__pycache__/*' -not -path 'resources/demo/*')
	@rm -rf build/package && mkdir -p build/package dist
	cp -r sam_cd_plugin build/package/sam_cd_plugin
	find build/package -name __pycache__ -prune -exec rm -rf {} +
	mkdir -p build/package/sam_cd_plugin/resources
	cp -r resources/styles resources/checkpoints build/package/sam_cd_plugin/resources/
	cp resources/icon.png metadata.txt LICENSE build/package/sam_cd_plugin/
	cp resources/icon.png resources/icon.svg build/package/sam_cd_plugin/resources/
	rm -f $@ && cd build/package && zip -q -r ../../$@ sam_cd_plugin
	@echo "plugin zip: $@ (QGIS: Plugins > Manage and Install Plugins > Install from ZIP)"

# The Python package (pyproject.toml): dist/sam_cd-<version>-py3-none-any.whl, for servers and
# Dask workers (pip install 'dist/sam_cd-...whl[engine,dask]').
wheel:
	$$([ -x $(PY) ] && echo $(PY) || echo python3) -m pip wheel --no-deps -q -w dist .
	@ls dist/sam_cd-*.whl

install-plugin: package
	mkdir -p "$(QGIS_PROFILE_DIR)/python/plugins"
	rm -rf "$(QGIS_PROFILE_DIR)/python/plugins/sam_cd_plugin"
	cd "$(QGIS_PROFILE_DIR)/python/plugins" && unzip -q -o "$(CURDIR)/$(PLUGIN_ZIP)"
	@echo "installed into $(QGIS_PROFILE_DIR)/python/plugins/sam_cd_plugin (enable it in Plugins > Manage)"

bench: setup
	$(PY) bench/bench_pipeline.py

clean:
	rm -rf build dist $(DEMO_DIR)
