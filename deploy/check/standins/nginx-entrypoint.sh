#!/bin/sh
# The official nginx image's start for what deploy/nginx uses: source the executable
# /docker-entrypoint.d/*.envsh, render /etc/nginx/templates/*.template into
# /etc/nginx/conf.d/ filling in only the variables that are set (nginx's own $host stays),
# then run the command.
set -eu
for script in /docker-entrypoint.d/*.envsh; do
    if [ -x "$script" ]; then
        . "$script"
    fi
done
defined=$(env | cut -d= -f1 | sed 's/.*/${&}/' | tr '\n' ' ')
for template in /etc/nginx/templates/*.template; do
    if [ -f "$template" ]; then
        envsubst "$defined" < "$template" > "/etc/nginx/conf.d/$(basename "$template" .template)"
    fi
done
exec "$@"
