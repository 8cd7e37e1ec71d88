from django.urls import path

from accounts import apis, workspace_apis

urlpatterns = [
    path("register", apis.RegisterApi.as_view(), name="api-register"),
    path("login", apis.LoginApi.as_view(), name="api-login"),
    path("logout", apis.LogoutApi.as_view(), name="api-logout"),
    path("me", apis.MeApi.as_view(), name="api-me"),
]

# Mounted at /api/ (costtracker/urls.py).
workspace_urlpatterns = [
    path("workspaces", workspace_apis.WorkspaceListApi.as_view(), name="api-workspaces"),
    path("workspace/members", workspace_apis.MemberListApi.as_view(), name="api-members"),
    path("workspace/invites", workspace_apis.InviteCreateApi.as_view(), name="api-invites"),
]
