# One image for the API and the workers (the API never imports torch; sharing the image keeps versions equal).
# PyPI's torch wheel for Linux carries CUDA: the worker container uses the GPU reserved in docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /srv/delbench

# dependencies first, so code changes do not reinstall torch
COPY pyproject.toml constraints.txt ./
RUN mkdir -p delbench evaluator app worker migrations \
    && touch delbench/__init__.py evaluator/__init__.py app/__init__.py worker/__init__.py migrations/__init__.py \
    && pip install -c constraints.txt '.[server,evaluator]'

# a plain install: the migrations and the tier files are package data
COPY . .
# .git stays out of the image, so the commit is passed in at build time and recorded in every result:
#   docker build --build-arg DELBENCH_CODE_VERSION=0.1.0+g$(git rev-parse --short=12 HEAD) .
ARG DELBENCH_CODE_VERSION=""
ENV DELBENCH_CODE_VERSION=${DELBENCH_CODE_VERSION}
RUN pip install --no-deps --force-reinstall . && rm -rf build && useradd --system --home /srv/delbench delbench && mkdir -p /data && chown delbench /data
USER delbench

EXPOSE 8000
CMD ["delbench", "serve", "--host", "0.0.0.0", "--port", "8000"]
