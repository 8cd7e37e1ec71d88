from django.urls import path

from providers import views

urlpatterns = [
    path("accounts/", views.account_list, name="account-list"),
    path("accounts/add/", views.account_add, name="account-add"),
    path("accounts/<int:pk>/", views.account_edit, name="account-edit"),
    path("accounts/<int:pk>/overview/", views.account_detail, name="account-detail"),
    path("accounts/<int:pk>/delete/", views.account_delete, name="account-delete"),
    path("accounts/<int:pk>/test/", views.account_test, name="account-test"),
]
