from rest_framework.routers import SimpleRouter

from tasks_catalog.views import TaskTypeViewSet

router = SimpleRouter()
router.register("task-types", TaskTypeViewSet, basename="task-type")
urlpatterns = router.urls
