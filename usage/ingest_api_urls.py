# Wired into costtracker/urls.py; filled in by its feature.
urlpatterns: list = []
