from django.urls import path

from accounts import apis

urlpatterns = [
    path("register", apis.RegisterApi.as_view(), name="api-register"),
    path("login", apis.LoginApi.as_view(), name="api-login"),
    path("logout", apis.LogoutApi.as_view(), name="api-logout"),
    path("me", apis.MeApi.as_view(), name="api-me"),
]
