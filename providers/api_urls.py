from django.urls import path

from providers import apis
from providers.ratelimits.apis import RateLimitListApi

urlpatterns = [
    path("services", apis.ServiceListApi.as_view(), name="api-services"),
    path("services/<int:pk>", apis.ServiceDetailApi.as_view(), name="api-service"),
    path("accounts", apis.AccountListCreateApi.as_view(), name="api-accounts"),
    path("accounts/<int:pk>", apis.AccountDetailApi.as_view(), name="api-account"),
    path("accounts/<int:pk>/test", apis.AccountTestApi.as_view(), name="api-account-test"),
    path("ratelimits", RateLimitListApi.as_view(), name="api-ratelimits"),
]
