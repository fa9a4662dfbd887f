"""The API's routes, one module per area.

`API_ROUTERS` serve the catalogue and need a key to read when the settings say so
(admin's retrain routes always need a write key); `OPEN_ROUTERS` (probes, metrics, the
page) never do.
"""

from service.routes import admin, health, listens, model, page, similar, tracks, users

API_ROUTERS = (
    similar.router,
    tracks.router,
    users.router,
    listens.router,
    model.router,
    admin.router,
)
OPEN_ROUTERS = (health.router, page.router)
