from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views, workspace_views

urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "password/",
        auth_views.PasswordChangeView.as_view(success_url="/password/done/"),
        name="password_change",
    ),
    path(
        "password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"
    ),
    path("profile/", views.profile, name="profile"),
    path("profile/tokens/", views.api_tokens, name="api-tokens"),
    path("profile/tokens/<int:pk>/revoke/", views.api_token_revoke, name="api-token-revoke"),
    path("workspace/", workspace_views.workspace_settings, name="workspace"),
    path("workspace/delete/", workspace_views.workspace_delete, name="workspace-delete"),
    path("workspace/invites/", workspace_views.invite_create, name="invite-create"),
    path("workspace/invites/<int:pk>/revoke/", workspace_views.invite_revoke, name="invite-revoke"),
    path("workspace/members/<int:pk>/role/", workspace_views.member_role, name="member-role"),
    path("workspace/members/<int:pk>/remove/", workspace_views.member_remove, name="member-remove"),
    path("workspaces/new/", workspace_views.workspace_new, name="workspace-new"),
    path("workspaces/switch/", workspace_views.workspace_switch, name="workspace-switch"),
    path("invites/<str:token>/", workspace_views.invite_accept, name="invite-accept"),
]
