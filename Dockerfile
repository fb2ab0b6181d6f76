# tradingd in a container. Without arguments it runs the built-in paper profile (embedded Redis
# and Postgres under the data volume); arguments are appended to `tradingd run`:
#   docker build -t tradingd .
#   docker run -p 127.0.0.1:8080:8080 -v tradingd-data:/var/lib/tradingd \
#     -e TRADINGD_ADMIN_KEY=... --stop-timeout 30 tradingd [--config /etc/tradingd.toml]
# --stop-timeout (compose: stop_grace_period) must exceed [shutdown] grace_s (10 s by default) so
# SIGTERM can drain in-flight orders before Docker's SIGKILL.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY engine ./engine
COPY adapters ./adapters
RUN pip install . && rm -rf /src

# Postgres refuses to run as root, and nothing here needs root.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/tradingd --shell /usr/sbin/nologin tradingd \
    && install -d -o tradingd -g tradingd -m 0700 /var/lib/tradingd

ENV TRADINGD_DATA_DIR=/var/lib/tradingd
VOLUME /var/lib/tradingd
WORKDIR /var/lib/tradingd
USER tradingd

EXPOSE 8080
STOPSIGNAL SIGTERM
# No curl in the slim image: the standard library does the probe.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/health/live', timeout=4).status != 200)"]

ENTRYPOINT ["tradingd", "run", "--host", "0.0.0.0"]
