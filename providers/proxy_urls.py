from django.urls import path

from providers.proxy import views

# Anything under /proxy/<provider>/ reaches one view, which forwards only allow-listed paths.
urlpatterns = [
    path("<slug:provider>/<path:path>", views.proxy, name="proxy"),
]
